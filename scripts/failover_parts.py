"""The parts of `scripts.failover`: the worker processes it starts and kills, the producer of the meters'
payloads, InfluxDB's view of them and the consumer group's changes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2

from pipeline import topics
from pipeline.brokers import KafkaSettings
from pipeline.kafka import ensure_topics
from tests.influxdb import Influx
from wattstream.embedded.children import stop_child

ROOT = Path(__file__).resolve().parent.parent

READY = "Worker]: Ready"
RAW = topics.raw_topic("iammeter")
PARTITIONS = KafkaSettings().partitions
# Faust gives a worker the same partition numbers of an agent's input topic and of its table's changelog.
DECODE_CHANGELOG = "decode-iammeter-state-changelog"  # ~ meter.raw.iammeter (its agent writes InfluxDB)
LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")
REBALANCE = re.compile(r"rebalanc|_on_partitions_(assigned|revoked)|generation id|heartbeat|member|revok"
                       r"|Recovery\]: (Restoring state|Worker ready)", re.IGNORECASE)


class ImportCrash(RuntimeError):
    """A worker died on start with an import error (the code under pipeline/ being edited)."""


def payload() -> bytes:
    vectors = json.loads((ROOT / "tests" / "frames" / "iammeter" / "vectors.json").read_text())
    by_id = {entry["id"]: entry for entry in vectors}
    return str(by_id["iammeter-doc-three-phase-nem"]["input"]).encode()


def partition(key: bytes) -> int:
    """aiokafka's (and Kafka's) default partitioner."""
    return (murmur2(key) & 0x7FFFFFFF) % PARTITIONS


def choose_devices(count: int) -> list[str]:
    """`count` device ids spread evenly over the raw partitions: whichever partitions a worker gets, some
    devices are on survivors and some were on the killed one."""
    chosen: list[str] = []
    per_partition: dict[int, int] = {}
    for rounds in range(1, 1000):
        for number in range(5000):
            device = f"F{number:04d}"
            raw = partition(device.encode())
            if device not in chosen and per_partition.get(raw, 0) < rounds:
                chosen.append(device)
                per_partition[raw] = per_partition.get(raw, 0) + 1
                if len(chosen) == count:
                    return chosen
    raise AssertionError("unreachable")


class Worker:
    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "wattstream", "worker"], env=env, cwd=workdir,
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            text = self.output()
            if "ImportError" in text or "ModuleNotFoundError" in text or "SyntaxError" in text:
                raise ImportCrash(f"{self.name} exited with {self.proc.returncode} on start:\n{text[-2000:]}")
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{text[-3000:]}")

    def assignment(self) -> tuple[int, dict[str, set[int]]]:
        """(generation, changelog topic suffix → partitions) of the latest assignment the worker logged."""
        lines = self.output().splitlines()
        generation, start = -1, None
        for index, line in enumerate(lines):
            if m := re.search(r"generation id (\d+)", line):
                generation = int(m.group(1))
            if "Highwater for active changelog partitions" in line:
                start = index
        found: dict[str, set[int]] = {}
        if start is None:
            return generation, found
        current = ""
        for line in lines[start + 1:]:
            if line.startswith("+"):
                continue
            if not line.startswith("|"):
                break
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if len(cells) < 2 or not cells[1].isdigit():
                continue
            if cells[0] != "〃":
                current = cells[0]
            if current.endswith(DECODE_CHANGELOG):
                found.setdefault(DECODE_CHANGELOG, set()).add(int(cells[1]))
        return generation, found

    def stop(self) -> None:
        stop_child(self.proc)


@dataclass
class Result:
    run: int
    timeout: float
    killed: str
    latency: dict[str, float]  # device → seconds from the kill until its first post-kill reading was in InfluxDB
    affected: dict[str, bool]  # device → its raw partition was the killed worker's
    missing: dict[str, int]  # device → post-kill payloads sent but not in InfluxDB at the end
    log_lines: list[str] = field(default_factory=list)  # the survivors' rebalance lines, relative to the kill
    group: list[str] = field(default_factory=list)  # the group's state changes (Tansu's DescribeGroups) after the kill
    startup: float = 0.0
    timed_out: list[str] = field(default_factory=list)

    @property
    def failover(self) -> float:
        return max(self.latency.values())

    def unaffected_median(self) -> float:
        values = [v for d, v in self.latency.items() if not self.affected[d]]
        return statistics.median(values) if values else float("nan")

    def affected_values(self) -> list[float]:
        return sorted(v for d, v in self.latency.items() if self.affected[d])


def readings_per_meter(influx: Influx, since: datetime | None = None, until: datetime | None = None) -> dict[str, int]:
    """meter → readings (phase total) in [since, until)."""
    where = ["phase = 'total'"]
    if since is not None:
        where.append(f"time >= '{since.isoformat().replace('+00:00', 'Z')}'")
    if until is not None:
        where.append(f"time < '{until.isoformat().replace('+00:00', 'Z')}'")
    rows = influx.query(f"SELECT count(power_w) FROM readings WHERE {' AND '.join(where)} GROUP BY meter")
    return {str(row["meter"]).removeprefix("iammeter:"): int(row["count"]) for row in rows}


async def create_raw_topic(bootstrap: str) -> None:
    await ensure_topics(KafkaSettings(bootstrap=bootstrap).connection(), [RAW], PARTITIONS)


class Producer:
    """One payload per device and second, `received_at` = send time; remembers what it sent."""

    def __init__(self, bootstrap: str, devices: list[str]) -> None:
        self.bootstrap, self.devices, self.value = bootstrap, devices, payload()
        self.sent: list[datetime] = []  # the send time of each round (all devices)

    async def send_round(self, producer: AIOKafkaProducer) -> None:
        now = datetime.now(UTC)
        headers = [(topics.H_RECEIVED_AT, now.isoformat().encode())]
        futures = [await producer.send(RAW, value=self.value, key=d.encode(), headers=headers) for d in self.devices]
        await asyncio.gather(*futures)
        self.sent.append(now)

    async def every_second(self, producer: AIOKafkaProducer, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        tick = loop.time()
        while not stop.is_set():
            await self.send_round(producer)
            tick += 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(tick - loop.time(), 0))


async def watch_group(bootstrap: str, group: str, since: float, changes: list[str], stop: asyncio.Event) -> None:
    """The group's state and member count as Tansu describes it, each change as `+S.S s  state, N member(s)`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        last = None
        while not stop.is_set():
            try:
                described = (await admin.describe_consumer_groups([group]))[0].groups[0]
                now = (described[2], len(described[5]))  # (state, members)
            except Exception as exc:  # a failed look is a data point too, not the end of the run
                now = (f"describe failed: {type(exc).__name__}", -1)
            if now != last:
                changes.append(f"{time.monotonic() - since:+7.1f} s  {now[0]}, {now[1]} member(s)")
                last = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
    finally:
        await admin.close()


def log_offsets(worker: Worker, killed_at: datetime) -> list[str]:
    """A survivor's rebalance-related lines after the kill, as `+S.S s  line`."""
    local_kill = killed_at.astimezone().replace(tzinfo=None)
    found = []
    for line in worker.output().splitlines():
        m = LOG_TIME.match(line)
        if not m or not REBALANCE.search(line):
            continue
        at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
        if at >= local_kill - timedelta(seconds=1):
            found.append(f"{(at - local_kill).total_seconds():+7.1f} s  {line[m.end():].strip()[:150]}")
    return found
