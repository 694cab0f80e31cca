"""`wattstream bench`: what one worker sustains, measured against a baseline in the same run.

1. Starts Tansu, produces N IAMMETER payloads (simulated meters, 1- and 3-phase) to `meter.raw.iammeter`.
2. Baseline: a plain aiokafka consumer reads them back and decodes each payload (same decoder).
3. Pipeline: the real Faust app (decode agent → `meter.readings` → readings agent, here a measuring sink in
   place of InfluxDB) drains the same backlog: sustained readings/s from first to last sink write.
4. Latency: payloads produced at a steady rate below the measured throughput; p50/p99 from the
   producer's `received_at` stamp to the sink's write.
With `--profile`, py-spy samples this process during step 3 and the hottest frames are printed.
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
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bridges.kafka import ensure_topics, raw_headers
from bridges.simulate import SimulatedIammeter
from pipeline import topics
from pipeline.app import create_app
from pipeline.drivers import iammeter
from pipeline.embedded.servers import start_tansu
from pipeline.models import Reading
from pipeline.settings import KafkaSettings, Settings, WorkerSettings
from pipeline.sinks import Record
from pipeline.worker import run_worker

METERS = 100
PARTITIONS = 4
Stats = list[tuple[float, int, list[float]]]  # per sink write: time, readings, latencies (ms)


class MeasuringSink:
    """Appends one line per written batch to a stats file: `<unix time> <count> <latency ms>,...`
    (latency = write time - the producer's `received_at` stamp) of the readings in it; the debounced
    readings and averages of the same batch are written too but not counted."""

    name = "bench"

    def __init__(self, stats: Path) -> None:
        self._stats = stats.open("a", buffering=1)

    def written(self, source: str) -> None:
        return None

    async def write(self, batch: Sequence[Record], through: Mapping[str, int] | None = None) -> None:
        now = time.time()
        readings = [r for r in batch if isinstance(r, Reading)]
        if readings:
            latencies = ",".join(f"{1000 * (now - r.received_at.timestamp()):.1f}" for r in readings)
            self._stats.write(f"{now} {len(readings)} {latencies}\n")

    async def close(self) -> None:
        self._stats.close()


def read_stats(stats: Path) -> Stats:
    if not stats.exists():
        return []
    rows = []
    for line in stats.read_text().splitlines():
        when, count, latencies = line.split(" ")
        rows.append((float(when), int(count), [float(x) for x in latencies.split(",")]))
    return rows


def payloads(n: int) -> list[tuple[str, bytes]]:
    meters = [SimulatedIammeter(f"BE{i:06X}", phases=3 if i % 2 else 1, pv_peak_w=6000 if i % 4 == 1 else 0,
                                seed=i) for i in range(METERS)]
    now = datetime.now().astimezone()
    return [(meters[i % METERS].sn, meters[i % METERS].payload(now, 1.0)) for i in range(n)]


async def produce(bootstrap: str, items: list[tuple[str, bytes]], rate: float | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1 << 20)
    await producer.start()
    try:
        started = time.monotonic()
        futures = []
        for i, (sn, body) in enumerate(items):
            if rate is not None:
                await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            futures.append(await producer.send(topics.raw_topic("iammeter"), value=body, key=sn.encode(),
                                               headers=raw_headers("iammeter", "bench", datetime.now(UTC))))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def baseline(bootstrap: str, n: int) -> float:
    """A plain aiokafka consumer decoding every payload: records/s."""
    consumer = AIOKafkaConsumer(topics.raw_topic("iammeter"), bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                group_id=f"bench-baseline-{uuid.uuid4().hex[:6]}", max_poll_records=5000)
    await consumer.start()
    try:
        done, started = 0, None
        at = datetime.now(UTC)
        while done < n:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                started = started or time.perf_counter()
                for record in records:
                    iammeter.decode(record.value, received_at=at, device_id=record.key.decode())
                done += len(records)
        return n / (time.perf_counter() - (started or time.perf_counter()))
    finally:
        await consumer.stop()


def start_profiler(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not found (pip install py-spy); no profile", file=sys.stderr)
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200",
                             "--format", "raw", "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_profile(path: Path, top: int = 15) -> str:
    """Self time per frame and inclusive time per module from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        n = int(count)
        total += n
        own[frames[-1]] += n
        for module in {f.split(" (")[1].split(":")[0].split("site-packages/")[-1].split("/")[0]
                       for f in frames if " (" in f}:
            inclusive[module] += n
    lines = [f"profile: {total} samples; hottest frames (self time):"]
    lines += [f"  {100 * n / total:5.1f}%  {frame[:110]}" for frame, n in own.most_common(top)]
    lines += ["inclusive time by package:"]
    lines += [f"  {100 * n / total:5.1f}%  {module}" for module, n in inclusive.most_common(top)]
    return "\n".join(lines)


def bench_worker(bootstrap: str, workdir: Path) -> None:
    """The worker process of the benchmark: the real app with the measuring sink."""
    settings = Settings(
        kafka=KafkaSettings(bootstrap=bootstrap, partitions=PARTITIONS),
        worker=WorkerSettings(app_id=f"bench-{uuid.uuid4().hex[:6]}", datadir=workdir / "worker",
                              session_timeout=6, rebalance_timeout=6, log_level="warning"),
        _env_file=None,  # type: ignore[call-arg]
    )
    run_worker(create_app(settings, sink=MeasuringSink(workdir / "stats.txt")), "warning")


def wait_count(stats: Path, count: int, proc: subprocess.Popen[bytes], timeout: float = 600) -> Stats:
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


def run_bench(count: int, rate: float | None = None, profile: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="wattstream-bench-"))
    tansu = start_tansu(workdir / "tansu")
    stats = workdir / "stats.txt"
    proc = None
    try:
        raw = [topics.raw_topic("iammeter"), topics.READINGS, topics.DEADLETTER]
        asyncio.run(ensure_topics(tansu.address, raw, PARTITIONS))
        t0 = time.perf_counter()
        asyncio.run(produce(tansu.address, payloads(count)))
        print(f"produced {count} IAMMETER payloads ({METERS} meters, 1/3-phase) in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        base = asyncio.run(baseline(tansu.address, count))
        print(f"baseline  (aiokafka consumer + decode):   {base:10,.0f} payloads/s", flush=True)

        with (workdir / "worker.log").open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "pipeline.bench", tansu.address, str(workdir)],
                                    stdout=log, stderr=subprocess.STDOUT)
        wait_count(stats, 1, proc)
        spy = start_profiler(proc.pid, 10, workdir / "profile.txt") if profile else None
        rows = wait_count(stats, count, proc)
        through = (count - rows[0][1]) / (rows[-1][0] - rows[0][0])
        print(f"pipeline  (Faust decode → readings → sink): {through:10,.0f} readings/s   "
              f"ratio {through / base:.3f} of baseline", flush=True)
        if spy is not None:
            spy.wait()

        rate, seconds = rate or min(1000.0, through / 2), 10
        steady = int(rate * seconds)
        asyncio.run(produce(tansu.address, payloads(steady), rate=rate))
        rows = wait_count(stats, count + steady, proc)
        latencies = [x for _, _, batch in rows for x in batch][count:]
        q = statistics.quantiles(latencies, n=100)
        print(f"latency at {rate:.0f} payloads/s (producer stamp → sink write): p50 {q[49]:.0f} ms, "
              f"p99 {q[98]:.0f} ms ({len(latencies)} readings)", flush=True)
        if spy is not None and (workdir / "profile.txt").exists():
            print(summarize_profile(workdir / "profile.txt"), flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(60)
        tansu.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0

if __name__ == "__main__":
    bench_worker(sys.argv[1], Path(sys.argv[2]))
