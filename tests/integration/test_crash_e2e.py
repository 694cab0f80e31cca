"""Trustworthy under faults (docs/development.md): the worker killed with SIGKILL at seeded random moments
while every agent is busy, started again, and what it left in InfluxDB, Kafka and the daily files compared
record by record with the fault-free reference (`tests.faults`: the same pure code, offline).

Variants: one worker, two workers in one group (one of them killed, the others go on; partitions move after
the session timeout), and the file sink; three workers in one group when chosen. The raw payloads go to
Kafka one record each for one worker (and three), through the bridges' producer for two workers and the
file sink: in envelopes of up to a thousand payloads (`pipeline.envelope`), so kills land inside them. With
`WATTSTREAM_FAULT_KILLS=0` each is a fault-free run (the proof that the reference is what a worker computes,
should a kill variant fail).
The whole stream is on Kafka before the first worker starts, so decode, readings and surplus are all busy.

Knobs: `WATTSTREAM_FAULT_SEED` (default: random; printed, and named in every failure),
`WATTSTREAM_FAULT_KILLS` (5 per faulty variant; `_FILE_KILLS`, 3, for the file sink's; `_GROUP_KILLS`, 3,
for two and three workers),
`WATTSTREAM_FAULT_MINUTES` (25) and `WATTSTREAM_FAULT_METERS` (10) for a longer soak,
`WATTSTREAM_FAULT_VARIANTS` (`one-worker,two-workers,file-sink`; `three-workers` too).
`WATTSTREAM_FAULT_KILLS=0` runs every variant without a kill: the proof that the reference holds for both
sinks and for two workers. `pytest -s` shows every kill, the repeated copies per topic and the timings.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pytest

from bridges.kafka import RawProducer
from pipeline import topics
from pipeline.brokers import KafkaSettings
from pipeline.kafka import ensure_topics
from pipeline.logic.windows import WindowConfig
from pipeline.meters_file import MetersFile
from tests.conftest import Process, Stack
from tests.faults import compare
from tests.faults import stream as faulty
from tests.kafka import consume, produce
from wattstream.embedded.servers import free_port

KILLS = int(os.environ.get("WATTSTREAM_FAULT_KILLS", "5"))
# the file sink's variant kills less by default (its journal is also unit-tested), and so does the group's
# (each kill there waits a session timeout and a rebalance): the suite stays short; soaks set them higher
FILE_KILLS = int(os.environ.get("WATTSTREAM_FAULT_FILE_KILLS", str(min(KILLS, 3))))
GROUP_KILLS = int(os.environ.get("WATTSTREAM_FAULT_GROUP_KILLS", str(min(KILLS, 3))))
MINUTES = int(os.environ.get("WATTSTREAM_FAULT_MINUTES", "25"))
METERS = int(os.environ.get("WATTSTREAM_FAULT_METERS", "10"))
SEED = int(os.environ.get("WATTSTREAM_FAULT_SEED") or random.SystemRandom().randrange(10**6))
READY = "Worker]: Ready"
ASSIGNED = "Executing _on_partitions_assigned"
FINISH_WITHIN = 180.0  # from the last start until every expected output is there
STALLED = 30.0  # no output changed for this long (more than a session timeout and a rebalance): something is missing
SETTLED = 1.5  # every expected output there and nothing changed for this long: the run is over


@dataclass(frozen=True)
class Variant:
    name: str
    workers: int
    sink: Literal["influx", "files"]
    kills: int
    envelopes: bool  # the raw payloads produced as a busy bridge does (`RawProducer`)


ALL_VARIANTS = [
    Variant("one-worker", 1, "influx", KILLS, envelopes=False),
    Variant("two-workers", 2, "influx", GROUP_KILLS, envelopes=True),
    Variant("three-workers", 3, "influx", GROUP_KILLS, envelopes=False),
    Variant("file-sink", 1, "files", FILE_KILLS, envelopes=True),
]
# three workers on a small machine prove little more than two and take as long: for soaks, not CI
CHOSEN = os.environ.get("WATTSTREAM_FAULT_VARIANTS", "one-worker,two-workers,file-sink").split(",")
VARIANTS = [variant for variant in ALL_VARIANTS if variant.name in CHOSEN]
assert len(VARIANTS) == len(CHOSEN), f"WATTSTREAM_FAULT_VARIANTS: one of {CHOSEN} is not a variant"


@functools.cache
def scenario() -> tuple[faulty.Stream, faulty.Reference, dict[str, Counter[str]]]:
    """The stream, its reference and the reference's daily files (once per session)."""
    given = faulty.generate(METERS, MINUTES)
    ref = faulty.reference(given, faulty.meters_file())
    starts, stops = ref.starts_and_stops()
    assert starts >= 1 and stops >= 1, f"the car never starts and stops ({starts}, {stops}): the site test is vacuous"
    assert [s.model_copy(update={"pv_w": None}) for s in ref.decisions] == \
        [s.model_copy(update={"pv_w": None}) for s in given.loop], "the backtest decides otherwise than the loop"
    return given, ref, compare.file_lines(ref)


class Crew:
    """The worker processes of a run: slots with their own data dir and metrics port, each started again
    under a new name after a kill."""

    def __init__(self, stack: Stack, env: dict[str, str], slots: int) -> None:
        self.stack, self.env = stack, env
        self.running: dict[str, Process] = {}
        self.starts: dict[str, int] = {}
        self.started_at: dict[str, float] = {}
        self.assigned_before: dict[str, int] = {}  # per slot: its assignments when the latest worker started
        for slot in "abc"[:slots]:
            self.start(slot)

    def start(self, slot: str) -> Process:
        self.assigned_before = {s: self.assignments(s) for s in self.running if s != slot} | {slot: 0}
        self.starts[slot] = self.starts.get(slot, 0) + 1
        env = {**self.env, "WATTSTREAM_WORKER_DATADIR": str(self.stack.workdir / f"worker-{slot}"),
               "WATTSTREAM_WORKER_METRICS_PORT": str(free_port())}
        process = Process(f"worker-{slot}{self.starts[slot]}", ["worker"], env, self.stack.workdir)
        self.stack.processes.append(process)  # stopped at the end of the test like the stack's own
        self.running[slot], self.started_at[slot] = process, time.monotonic()
        return process

    def assignments(self, slot: str) -> int:
        return self.running[slot].output().count(ASSIGNED)

    def latest_start(self) -> float:
        return max(self.started_at.values())

    def kill(self, slot: str) -> str:
        """SIGKILL; → what the worker was doing (its last log line)."""
        process = self.running[slot]
        if process.proc.poll() is not None:
            raise AssertionError(f"{process.name} exited by itself with {process.proc.returncode} before its kill "
                                 f"(seed {SEED}): {crash(process)}")
        process.proc.kill()
        process.proc.wait()
        lines = process.output().strip().splitlines() or ["(nothing logged)"]
        return lines[-1].split("] ", 3)[-1][:120]  # without "[time] [pid] [level] "

    def dump_stacks(self) -> str:
        """USR2 to every running worker: it logs each thread's and asyncio task's stack (for a stalled run)."""
        for process in self.running.values():
            process.proc.send_signal(signal.SIGUSR2)
        for process in self.running.values():
            until(lambda: "TASKS" in process.output(), timeout=10)  # noqa: B023 (called at once)
        return ", ".join(str(process.log) for process in self.running.values())

    def check_alive(self) -> None:
        for process in self.running.values():
            if process.proc.poll() is not None:
                raise AssertionError(f"{process.name} exited by itself with {process.proc.returncode} "
                                     f"(seed {SEED}): {crash(process)}")


def crash(process: Process) -> str:
    """The first error a worker logged, and the end of its log."""
    output = process.output()
    errors = [line for line in output.splitlines() if "[ERROR]" in line or "[CRITICAL]" in line]
    return f"{errors[0][:600] if errors else 'no error logged'}\n(log {process.log}, its end:)\n{output[-2000:]}"


class Outputs:
    """What a run has written to its sink so far, and the wait until it is all there."""

    def __init__(self, stack: Stack, sink: Literal["influx", "files"], files: Path, ref: faulty.Reference,
                 lines: dict[str, Counter[str]]) -> None:
        self.stack, self.sink, self.files = stack, sink, files
        if sink == "influx":
            self.expected = {"readings": len(ref.readings), "averages_10m": len(ref.averages),
                             "readings_5m": len(ref.debounced), "surplus": len(ref.decisions)}
        else:
            self.expected = {"daily lines": sum(sum(c.values()) for n, c in lines.items() if not n.startswith("sum")),
                             "sum lines": sum(sum(c.values()) for n, c in lines.items() if n.startswith("sum"))}

    def count(self) -> dict[str, int]:
        if self.sink == "files":
            daily = [p for p in self.files.glob("*.txt") if not p.name.startswith("sum")]
            return {"daily lines": sum(p.read_bytes().count(b"\n") for p in daily),
                    "sum lines": sum(p.read_bytes().count(b"\n") for p in self.files.glob("sum*.txt"))}
        counts = {}
        for name, q in (("readings", "SELECT count(power_w) FROM readings WHERE phase = 'total'"),
                        ("averages_10m", "SELECT count(power_w_mean) FROM averages_10m WHERE phase = 'total'"),
                        ("readings_5m", "SELECT count(power_w) FROM readings_5m WHERE phase = 'total'"),
                        ("surplus", "SELECT count(surplus_w) FROM surplus")):
            rows = self.stack.influx.query(q)
            counts[name] = int(rows[0]["count"]) if rows else 0
        return counts

    def flowing(self) -> int:
        """The readings written so far: growing while the agents are busy."""
        return next(iter(self.count().values()))

    def wait(self, crew: Crew) -> str:
        """Until every expected output is there and nothing changed for `SETTLED` s, or nothing changed for
        `STALLED` s (something is missing), or `FINISH_WITHIN` s."""
        started = changed = time.monotonic()
        last: dict[str, int] = {}
        while True:
            crew.check_alive()
            counts = self.count()
            now = time.monotonic()
            if counts != last:
                last, changed = counts, now
            if all(counts[k] >= v for k, v in self.expected.items()) and now - changed >= SETTLED:
                return f"complete after {now - started:.1f} s"
            if now - changed >= STALLED:
                return f"stalled after {now - started:.1f} s at {counts} (expected {self.expected})"
            if now - started >= FINISH_WITHIN:
                return f"still incomplete after {FINISH_WITHIN:.0f} s: {counts} (expected {self.expected})"
            time.sleep(0.3)


def until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def inflict(crew: Crew, outputs: Outputs, kills: int, rng: random.Random) -> None:
    """`kills` SIGKILLs at seeded moments, each followed by a start of the killed slot (the victim chosen at
    random among the running workers). More than half of them, shuffled among the others, are `running`:
    - running: 0-3 s after the victim is ready and the sink's output is growing (every agent busy);
    - starting: 1-4 s after the latest worker start (importing, registering tables, joining the group);
    - assigned: 0-0.3 s after the victim's next partition assignment (recovering tables, seeking, ready)."""
    kinds = ["running"] * math.ceil((kills + 1) / 2) + ["starting", "assigned"] * kills
    kinds = kinds[:kills]
    rng.shuffle(kinds)
    for number, kind in enumerate(kinds, 1):
        slot = rng.choice(sorted(crew.running))
        victim = crew.running[slot]
        note = ""
        if kind == "starting":
            time.sleep(max(crew.latest_start() + rng.uniform(1.0, 4.0) - time.monotonic(), 0))
        elif kind == "assigned":
            mark = crew.assigned_before.get(slot, 0)
            if not until(lambda: crew.assignments(slot) > mark, timeout=40):  # noqa: B023 (called at once)
                note = " (no assignment within 40 s)"
            time.sleep(rng.uniform(0.0, 0.3))
        else:
            victim.wait_for(READY, timeout=90)
            written = outputs.flowing()
            if not until(lambda: outputs.flowing() > written, timeout=40):  # noqa: B023
                note = " (no output within 40 s: idle?)"
            time.sleep(rng.uniform(0.0, 3.0))
        since = time.monotonic() - crew.started_at[slot]
        ready = READY in victim.output()
        last = crew.kill(slot)
        then = ", ".join(f"{name} {count}" for name, count in outputs.count().items())
        print(f"[faults seed={SEED}] kill {number}/{kills} ({kind}{note}): {victim.name} {since:.1f} s after its "
              f"start, {'after' if ready else 'before'} Ready; last log: {last}; written then: {then}")
        crew.start(slot)


async def read_topics(bootstrap: str, ref: faulty.Reference) -> dict[str, list[tuple[bytes, bytes]]]:
    wanted = {topics.READINGS: len(ref.readings), topics.READINGS_5M: len(ref.debounced),
              topics.AVERAGES_10M: len(ref.averages), topics.SURPLUS: len(ref.decisions), topics.DEADLETTER: 0}
    found = await asyncio.gather(*(consume(bootstrap, topic, count, within=60) for topic, count in wanted.items()))
    return dict(zip(wanted, found, strict=True))


def compare_influx(stack: Stack, ref: faulty.Reference, findings: compare.Findings) -> None:
    influx, meters = stack.influx, sorted({r.meter_id for r in ref.readings})

    def points(measurement: str) -> dict[compare.PointKey, compare.Fields]:
        found: dict[compare.PointKey, compare.Fields] = {}
        for meter in meters:  # one query per meter keeps each answer small
            rows = influx.query(f"SELECT * FROM {measurement} WHERE meter = '{meter}' GROUP BY *")
            found |= compare.influx_points(rows, ("meter", "phase"))
        return found

    expected = compare.reading_points(ref.readings)
    wrong = compare.wrong_points(expected, points("readings"))
    findings.check("InfluxDB readings", compare.point_problems(wrong),
                   f"{len(wrong)} of {len(expected)} (meter, phase, ts) points wrong, missing or extra")
    wrong = compare.wrong_points(compare.average_points(ref.averages), points("averages_10m"))
    windows: dict[tuple[str, datetime], list[str]] = {}
    for meter, phase, start in sorted(wrong):
        windows.setdefault((meter, start), []).append(phase)
    findings.check("InfluxDB averages_10m",
                   [f"{meter} window {compare.stamp(start)} ({', '.join(phases)} wrong), "
                    f"{'total' if 'total' in phases else phases[0]}: "
                    f"{wrong[meter, 'total' if 'total' in phases else phases[0], start]}"
                    for (meter, start), phases in windows.items()],
                   f"{len(windows)} of {len(ref.averages)} closed windows wrong, missing or extra "
                   f"(*_count/_mean/_min/_max/_delta of every phase)")
    debounced = points("readings_5m")
    buckets = compare.bucket_problems(ref.debounced, debounced, WindowConfig())
    findings.check("InfluxDB readings_5m buckets", buckets,
                   f"{len(buckets)} of {len(ref.debounced)} (meter, 5-minute bucket) without exactly the "
                   f"reference's one point")
    wrong = compare.wrong_points(compare.reading_points(ref.debounced), debounced)
    findings.check("InfluxDB readings_5m", compare.point_problems(wrong),
                   f"{len(wrong)} points wrong, missing or extra")
    surplus = compare.influx_points(influx.query("SELECT * FROM surplus GROUP BY *"), ("site", "phase"))
    wrong = compare.wrong_points(compare.surplus_points(ref.decisions), surplus, ignore=("pv_w",))
    findings.check("InfluxDB surplus", compare.point_problems(wrong),
                   f"{len(wrong)} of {len(ref.decisions)} decisions wrong, missing or extra "
                   f"(ts, charging, phases, current_a, surplus_w, reason, grid_w, charger_w, power_w)")


def compare_kafka(stack: Stack, ref: faulty.Reference, findings: compare.Findings) -> dict[str, int]:
    """→ the repeated copies per topic."""
    records = asyncio.run(read_topics(stack.tansu.address, ref))
    expected: dict[str, Sequence[Any]] = {"readings": ref.readings, "readings_5m": ref.debounced,
                                          "averages": ref.averages, "surplus": ref.decisions}
    repeats = {}
    for name, topic in compare.TOPICS.items():
        problems, repeats[topic.name] = compare.topic_problems(topic, records[topic.name], expected[name])
        findings.check(f"Kafka {topic.name}", problems,
                       f"{len(records[topic.name])} records for {len(expected[name])}: {len(problems)} wrong, "
                       f"missing or extra; {repeats[topic.name]} repeated copies")
    findings.check("Kafka power.surplus in time order",
                   compare.surplus_sequence_problems(records[topics.SURPLUS], ref.decisions),
                   f"first occurrences, later ts only: the backtest's {len(ref.decisions)} decisions")
    findings.check(f"Kafka {topics.DEADLETTER}", [f"{key!r}: {value[:160]!r}" for key, value in
                                                  records[topics.DEADLETTER]],
                   f"{len(records[topics.DEADLETTER])} dead letters")
    return repeats


async def produce_as_bridge(bootstrap: str, raws: Sequence[faulty.Raw]) -> Counter[int]:
    """Through the bridges' producer, all at once: what queues up behind a send goes in envelopes."""
    producer = RawProducer({"bootstrap_servers": bootstrap}, KafkaSettings().partitions)
    await producer.start(sorted({raw.driver for raw in raws}))
    try:
        await asyncio.gather(*[await producer.send(raw.driver, raw.device, raw.payload,
                                                   dict(raw.headers())[topics.H_ORIGIN].decode(), raw.received_at)
                               for raw in raws])
    finally:
        await producer.stop()
    return producer.sizes


@pytest.mark.timeout(300 + 30 * KILLS + 6 * MINUTES)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_outputs_are_the_fault_free_reference_after_sigkills(variant: Variant, stack: Stack, tmp_path: Path) -> None:
    began = time.monotonic()
    given, ref, lines = scenario()
    meters_file = tmp_path / "meters.toml"
    meters_file.write_text(faulty.SITE_METERS)
    assert MetersFile.load(meters_file) == faulty.meters_file()
    files = tmp_path / "files"
    env = {**stack.env, "WATTSTREAM_METERS_FILE": str(meters_file)}
    if variant.sink == "files":
        del env["WATTSTREAM_INFLUX_URL"]
        env |= {"WATTSTREAM_FILES_DIR": str(files), "WATTSTREAM_FILES_TZ": "UTC"}
    print(f"\n[faults seed={SEED}] {variant.name}: {len(given.raws)} raw payloads ({METERS} meters + GRID/PV + "
          f"EVN + B-route, {MINUTES} min), {len(ref.averages)} closed windows, {len(ref.debounced)} 5-minute buckets, "
          f"{len(ref.decisions)} decisions (car starts/stops {ref.starts_and_stops()}), {variant.kills} kills")

    bootstrap = stack.tansu.address
    if variant.envelopes:
        sizes = asyncio.run(produce_as_bridge(bootstrap, given.raws))
        print(f"[faults seed={SEED}] {variant.name}: {sum(sizes.values())} raw records, payloads per record "
              f"{min(sizes)}..{max(sizes)}")
        assert max(sizes) > 1, "no envelope was produced: the variant would test plain records only"
    else:
        for driver in sorted({raw.driver for raw in given.raws}):  # as a bridge creates and fills them, with the
            raws = [raw for raw in given.raws if raw.driver == driver]  # worker's partitions: two workers split them
            asyncio.run(ensure_topics(KafkaSettings(bootstrap=bootstrap).connection(), [topics.raw_topic(driver)],
                                      KafkaSettings().partitions))
            asyncio.run(produce(bootstrap, topics.raw_topic(driver), [r.record() for r in raws],
                                [r.headers() for r in raws]))
    produced = time.monotonic()

    outputs = Outputs(stack, variant.sink, files, ref, lines)
    crew = Crew(stack, env, variant.workers)
    inflict(crew, outputs, variant.kills, random.Random(f"{SEED}-{variant.name}"))
    try:
        for process in crew.running.values():
            process.wait_for(READY, timeout=90)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n(seed {SEED}; the workers' stacks are in {crew.dump_stacks()})") from None
    finished = outputs.wait(crew)
    ran = time.monotonic()
    print(f"[faults seed={SEED}] {variant.name}: run {finished}")
    if not finished.startswith("complete"):
        print(f"[faults seed={SEED}] {variant.name}: the workers' stacks are in {crew.dump_stacks()}")

    findings = compare.Findings(SEED)
    if variant.sink == "influx":
        compare_influx(stack, ref, findings)
    else:
        problems, missing, extra = compare.file_problems(lines, files)
        findings.check("files", problems, f"daily and sum files as multisets of lines: {missing} missing, {extra} "
                       f"extra of {sum(sum(c.values()) for c in lines.values())}")
    repeats = compare_kafka(stack, ref, findings)
    print(f"[faults seed={SEED}] {variant.name}: repeated copies per topic: {repeats}")
    print(f"[faults seed={SEED}] {variant.name}: timings: setup and produce {produced - began:.1f} s, "
          f"workers {ran - produced:.1f} s, comparison {time.monotonic() - ran:.1f} s, "
          f"total {time.monotonic() - began:.1f} s")
    if findings.failed:
        pytest.fail(f"{variant.name}: {findings.message()}", pytrace=False)
