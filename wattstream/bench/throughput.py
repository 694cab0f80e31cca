"""`wattstream bench`: what one worker sustains, measured against a baseline in the same run.

1. Starts Tansu and produces N IAMMETER payloads of 100 simulated meters (half of them three-phase)
   to `meter.raw.iammeter`, each meter once a second in event time (`received_at` headers spread over
   N / 100 s of the past, so windows close and the plausibility check sees real rates), through the
   bridges' producer as fast as it takes them (a busy bridge: what queues up goes in envelopes), or
   `--burst B` at a time (the backlog a live bridge leaves while the worker is down: envelopes of about
   max(1, B / 4) payloads, one per raw partition).
2. Baseline: a plain aiokafka consumer reads them back and decodes each payload (the same decoder, the
   same envelopes unpacked).
3. Stages: µs per reading of each step on its own, in this process (consume: aiokafka alone; decode;
   check: plausibility; windows: debounce and averages; sink mapping: InfluxDB line protocol and gzip;
   produce: the Reading JSON to Kafka as the agents produce it). The pipeline's cost beyond their sum is
   Faust's.
4. Pipeline: the real Faust app (the decode agent: decode, check, windows, the outputs to Kafka and
   the sink write) drains the same backlog into `LineSink` (the InfluxDB sink up to the HTTP post):
   sustained readings/s from first to last sink write.
5. Latency: payloads produced at a steady rate below the measured throughput; p50/p99 from the
   producer's `received_at` stamp to the sink's write.
With `--profile`, py-spy samples the worker during step 4 and the hottest frames are printed.
"""

from __future__ import annotations

import asyncio
import collections
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from bridges.kafka import RawProducer
from pipeline import envelope, topics
from pipeline.agents.outbox import Outbox, Outlet
from pipeline.app import create_app
from pipeline.brokers import KafkaSettings
from pipeline.drivers import iammeter
from pipeline.kafka import ensure_topics
from pipeline.logic.plausible import Limits, Plausibility, check
from pipeline.logic.windows import MeterState, WindowConfig
from pipeline.logic.windows import step as window_step
from pipeline.models import Reading
from pipeline.settings import InfluxSettings, Settings, WorkerSettings
from pipeline.sinks import Position, Record
from pipeline.sinks.influx import InfluxSink, body, lines
from pipeline.worker import run_worker
from simulators.meters import SimulatedIammeter
from wattstream.bench.profile import start_profiler, summarize_profile
from wattstream.embedded.children import stop_child
from wattstream.embedded.servers import rss_mb, start_tansu

METERS = 100  # default of --meters
PARTITIONS = 4
RAW = topics.raw_topic("iammeter")
SinkStats = list[tuple[float, int, list[float]]]  # per sink write: time, readings, latencies (ms)
Payload = tuple[str, bytes, datetime]  # device, payload, received_at


class LineSink(InfluxSink):
    """The InfluxDB sink up to the HTTP post: every record becomes line protocol and the batch is
    gzipped as it would be sent. Then one line per batch goes to a stats file:
    `<unix time> <count> <latency ms>,...` (latency = write time - the producer's `received_at`) of
    the readings in it; the debounced readings and averages are written too but not counted."""

    name = "bench"

    def __init__(self, stats: Path) -> None:
        super().__init__(InfluxSettings(url="http://127.0.0.1:1"))
        self._stats = stats.open("a", buffering=1)

    async def write(self, batch: Sequence[Record], through: Mapping[str, Position] | None = None) -> None:
        await super().write(batch, through)
        now = time.time()
        readings = [r for r in batch if isinstance(r, Reading)]
        if readings:
            latencies = ",".join(f"{1000 * (now - r.received_at.timestamp()):.1f}" for r in readings)
            self._stats.write(f"{now} {len(readings)} {latencies}\n")

    async def _post(self, body: bytes, indivisible: bool) -> None:
        pass

    async def close(self) -> None:
        self._stats.close()


def read_stats(stats: Path) -> SinkStats:
    if not stats.exists():
        return []
    rows = []
    for line in stats.read_text().splitlines():
        when, count, latencies = line.split(" ")
        rows.append((float(when), int(count), [float(x) for x in latencies.split(",")]))
    return rows


def fleet(size: int = METERS) -> list[SimulatedIammeter]:
    return [SimulatedIammeter(f"BE{i:06X}", phases=3 if i % 2 else 1, pv_peak_w=6000 if i % 4 == 1 else 0, seed=i)
            for i in range(size)]


def payloads(meters: Sequence[SimulatedIammeter], n: int, start: datetime, every: float = 1.0) -> list[Payload]:
    """`n` payloads, the meters in turn, each every `every` s of event time from `start`."""
    size = len(meters)
    return [(meters[i % size].sn, meters[i % size].payload(at := start + timedelta(seconds=i // size * every), every),
             at) for i in range(n)]


async def produce(bootstrap: str, items: Sequence[Payload], rate: float | None = None,
                  burst: int | None = None) -> collections.Counter[int]:
    """The payloads with their `received_at` through the bridges' producer, as fast as it takes them or at
    `rate` per second (stamped with the time of sending), or `burst` at a time, each burst delivered before
    the next (what a live bridge makes: small envelopes); how many records carried how many payloads."""
    producer = RawProducer({"bootstrap_servers": bootstrap}, PARTITIONS)
    await producer.start(["iammeter"])
    try:
        started = time.monotonic()
        futures = []
        for i, (sn, body, at) in enumerate(items):
            if rate is not None:
                await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
                at = datetime.now(UTC)
            futures.append(await producer.send("iammeter", sn, body, "bench", at))
            if burst is not None and len(futures) % burst == 0:
                await asyncio.gather(*futures[-burst:])
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return producer.sizes


async def consume_all(bootstrap: str, n: int, decode: bool) -> float:
    """A plain aiokafka consumer reading the `n` raw payloads (unpacking envelopes, and decoding each):
    payloads/s."""
    consumer = AIOKafkaConsumer(RAW, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=f"bench-baseline-{uuid.uuid4().hex[:6]}",
                                max_poll_records=5000)
    await consumer.start()
    try:
        done, started = 0, None
        at = datetime.now(UTC)
        while done < n:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                started = started or time.perf_counter()
                for record in records:
                    items = envelope.items(record.key, record.value, dict(record.headers))
                    if decode:
                        for item in items:
                            iammeter.decode(item.value, received_at=at, device_id=item.key.decode())
                    done += len(items)
        return n / (time.perf_counter() - (started or time.perf_counter()))
    finally:
        await consumer.stop()


async def produce_readings(bootstrap: str, readings: Sequence[Reading]) -> None:
    """The readings' JSON to `meter.readings` the way the agents produce (`agents.outbox`)."""
    outlet = Outlet({"bootstrap_servers": bootstrap})
    try:
        out = Outbox(outlet)
        for reading in readings:
            await out.send(topics.READINGS, reading.meter_id.encode(), reading.to_json())
        await out.confirm()
    finally:
        await outlet.stop()


def stages(bootstrap: str, items: Sequence[Payload], count: int) -> dict[str, float]:
    """µs per reading of each stage on its own (see the module's docstring)."""
    cost: dict[str, float] = {}

    def timed(name: str, started: float, n: int) -> None:
        cost[name] = (time.perf_counter() - started) / n * 1e6

    consume_rate = asyncio.run(consume_all(bootstrap, count, decode=False))
    cost["consume"] = 1e6 / consume_rate
    started = time.perf_counter()
    readings = [r for sn, body, at in items for r in iammeter.decode(body, received_at=at, device_id=sn)]
    timed("decode", started, len(readings))
    plausibility: dict[str, Plausibility] = collections.defaultdict(Plausibility)
    started, limits = time.perf_counter(), Limits()
    for reading in readings:
        check(plausibility[reading.meter_id], reading, limits)
    timed("check", started, len(readings))
    windows: dict[str, MeterState] = collections.defaultdict(MeterState)
    started, config = time.perf_counter(), WindowConfig()
    for reading in readings:
        window_step(windows[reading.meter_id], reading, config)
    timed("windows", started, len(readings))
    started = time.perf_counter()
    body([text for r in readings for text in lines(r)])
    timed("sink mapping", started, len(readings))
    started = time.perf_counter()
    asyncio.run(produce_readings(bootstrap, readings))
    timed("produce", started, len(readings))
    return cost


def bench_worker(bootstrap: str, workdir: Path) -> None:
    """The worker process of the benchmark: the real app with `LineSink`."""
    settings = Settings(
        kafka=KafkaSettings(bootstrap=bootstrap, partitions=PARTITIONS),
        worker=WorkerSettings(app_id=f"bench-{uuid.uuid4().hex[:6]}", datadir=workdir / "worker",
                              session_timeout=6, rebalance_timeout=6, log_level="warning"),
        _env_file=None,  # type: ignore[call-arg]
    )
    run_worker(create_app(settings, sink=LineSink(workdir / "stats.txt")), "warning")


def wait_count(stats: Path, count: int, proc: subprocess.Popen[bytes], timeout: float = 600) -> SinkStats:
    deadline = time.monotonic() + timeout
    while True:
        rows = read_stats(stats)
        if sum(n for _, n, _ in rows) >= count:
            return rows
        if proc.poll() is not None:
            raise RuntimeError(f"bench worker exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the pipeline wrote {sum(n for _, n, _ in rows)} of {count} readings in {timeout} s")
        time.sleep(0.1)


def run_bench(count: int, rate: float | None = None, profile: bool = False, meters: int = METERS,
              burst: int | None = None) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="wattstream-bench-"))
    tansu = start_tansu(workdir / "tansu")
    stats = workdir / "stats.txt"
    proc = None
    try:
        asyncio.run(ensure_topics(KafkaSettings(bootstrap=tansu.address).connection(),
                                  [RAW, topics.READINGS, topics.DEADLETTER], PARTITIONS))
        fleet_ = fleet(meters)
        items = payloads(fleet_, count, datetime.now(UTC) - timedelta(seconds=count // meters + 1))
        t0 = time.perf_counter()
        sizes = asyncio.run(produce(tansu.address, items, burst=burst))
        print(f"produced {count} IAMMETER payloads ({meters} meters, 1/3-phase) in "
              f"{time.perf_counter() - t0:.1f} s through the bridges' producer: {sum(sizes.values())} records, "
              f"{count / sum(sizes.values()):.1f} payloads per record", flush=True)
        base = asyncio.run(consume_all(tansu.address, count, decode=True))
        print(f"baseline  (aiokafka consumer + decode):  {base:10,.0f} payloads/s", flush=True)
        cost = stages(tansu.address, items, count)
        print("stages    (µs per reading, each alone):  " + ", ".join(f"{k} {v:.1f}" for k, v in cost.items())
              + f"; sum {sum(cost.values()):.1f} µs = {1e6 / sum(cost.values()):,.0f} readings/s", flush=True)

        with (workdir / "worker.log").open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "wattstream.bench.throughput", tansu.address, str(workdir)],
                                    stdout=log, stderr=subprocess.STDOUT)
        wait_count(stats, 1, proc)
        spy = start_profiler(proc.pid, 10, workdir / "profile.txt") if profile else None
        rows = wait_count(stats, count, proc)
        through = (count - rows[0][1]) / (rows[-1][0] - rows[0][0])
        print(f"pipeline  (Faust: raw → decode agent → sink): {through:7,.0f} readings/s   "
              f"ratio {through / base:.3f} of baseline; {1e6 / through:.1f} µs per reading, "
              f"{1e6 / through - sum(cost.values()):.1f} beyond the stages", flush=True)
        if spy is not None:
            spy.wait()

        rate, seconds = rate or min(1000.0, through / 2), 10
        steady = int(rate * seconds)
        asyncio.run(produce(tansu.address, payloads(fleet_, steady, datetime.now(UTC), meters / rate), rate=rate))
        rows = wait_count(stats, count + steady, proc)
        latencies = [x for _, _, batch in rows for x in batch][count:]
        q = statistics.quantiles(latencies, n=100)
        print(f"latency at {rate:.0f} payloads/s (producer stamp → sink write): p50 {q[49]:.0f} ms, "
              f"p99 {q[98]:.0f} ms ({len(latencies)} readings)", flush=True)
        print(f"worker memory: peak RSS {rss_mb(proc.pid, peak=True):.0f} MB with {meters} meters", flush=True)
        if spy is not None and (workdir / "profile.txt").exists():
            print(summarize_profile(workdir / "profile.txt"), flush=True)
    finally:
        if proc is not None:
            stop_child(proc, 60)
        tansu.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    bench_worker(sys.argv[1], Path(sys.argv[2]))
