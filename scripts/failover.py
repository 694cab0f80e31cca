"""How long a failover takes: two (or more) workers in one consumer group, one of them SIGKILLed, and the
time until every meter's readings reach InfluxDB again.

    .venv/bin/python -m scripts.failover [--runs 3] [--workers 2] [--session-timeout S] [--devices 20] [--keep]

Per run: a fresh Tansu and InfluxDB database, `--workers` `wattstream worker` processes (one group, their own
data dirs, the worker's default settings unless `--session-timeout S` is given: then S is both
`WATTSTREAM_WORKER_SESSION_TIMEOUT` and `_REBALANCE_TIMEOUT`), warmed up until both own partitions and
every device's first reading is in InfluxDB. Then one worker is killed with SIGKILL while a producer
sends one IAMMETER payload per second per device (`received_at` = send time, the reading's time), and
per device the seconds from the kill until its first reading sent after the kill is in InfluxDB are
measured. Devices whose raw partition was a survivor's are "unaffected".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer

from pipeline.settings import WorkerSettings
from scripts.failover_parts import (
    DECODE_CHANGELOG,
    PARTITIONS,
    READY,
    ImportCrash,
    Producer,
    Result,
    Worker,
    choose_devices,
    create_raw_topic,
    log_offsets,
    partition,
    readings_per_meter,
    watch_group,
)
from tests.influxdb import Influx, start_influxdb
from wattstream.embedded.servers import Server, start_tansu


async def measure(run: int, session_timeout: float | None, devices: list[str], influxd: Server, workdir: Path,
                  kill_index: int, count: int) -> Result:
    began = time.monotonic()
    tansu = start_tansu(workdir / "tansu")
    workers: list[Worker] = []
    try:
        influx = Influx(influxd)
        bootstrap = tansu.address
        await create_raw_topic(bootstrap)
        group = f"failover-{uuid.uuid4().hex[:8]}"
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("WATTSTREAM_")},
               "WATTSTREAM_KAFKA_BOOTSTRAP": bootstrap,
               "WATTSTREAM_INFLUX_URL": influx.url,
               "WATTSTREAM_INFLUX_TOKEN": "failover",
               "WATTSTREAM_INFLUX_BUCKET": influx.bucket,
               "WATTSTREAM_WORKER_APP_ID": group,
               "WATTSTREAM_WORKER_METRICS_PORT": "0"}
        if session_timeout is not None:
            env |= {"WATTSTREAM_WORKER_SESSION_TIMEOUT": f"{session_timeout:g}",
                    "WATTSTREAM_WORKER_REBALANCE_TIMEOUT": f"{session_timeout:g}"}
        for name in (f"worker-{letter}" for letter in "abcdefgh"[:count]):
            workers.append(Worker(name, {**env, "WATTSTREAM_WORKER_DATADIR": str(workdir / name)}, workdir))

        # Ready, one generation, partitions split, and every device's first reading in InfluxDB.
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            feed = Producer(bootstrap, devices)
            deadline = time.monotonic() + 120
            warm = False
            while True:
                for worker in workers:
                    worker.check_alive()
                ready = all(READY in w.output() for w in workers)
                assigned = [w.assignment() for w in workers]
                split = (ready and len({g for g, _ in assigned}) == 1
                         and all(a.get(DECODE_CHANGELOG) for _, a in assigned))
                if split and not warm:
                    await feed.send_round(producer)
                    warm = True
                if warm and len(await asyncio.to_thread(readings_per_meter, influx)) == len(devices):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not warm within 120 s: ready {ready}, assignments {assigned}")
                await asyncio.sleep(0.5)
            startup = time.monotonic() - began
            victim = workers[kill_index % count]
            survivors = [w for w in workers if w is not victim]
            kept = [survivor.assignment()[1] for survivor in survivors]
            mine = {d for d in devices if any(partition(d.encode()) in k[DECODE_CHANGELOG] for k in kept)}
            affected = {d: d not in mine for d in devices}

            # A steady stream for 3 s, the kill, and from that moment the stream again.
            stop = asyncio.Event()
            streaming = asyncio.create_task(feed.every_second(producer, stop))
            await asyncio.sleep(3.0)
            stop.set()
            await streaming
            killed_at, killed_mono = datetime.now(UTC), time.monotonic()
            victim.proc.kill()
            victim.proc.wait()
            stop = asyncio.Event()
            streaming = asyncio.create_task(feed.every_second(producer, stop))
            group_changes: list[str] = []
            watching = asyncio.create_task(watch_group(bootstrap, group, killed_mono, group_changes, stop))
            since_kill = killed_at.isoformat().replace("+00:00", "Z")
            latency: dict[str, float] = {}
            limit = 2 * (session_timeout or WorkerSettings().session_timeout) + 60
            timed_out: list[str] = []
            while len(latency) < len(devices):
                for survivor in survivors:
                    survivor.check_alive()
                if streaming.done():
                    streaming.result()
                rows = await asyncio.to_thread(
                    influx.query, f"SELECT first(power_w) FROM readings WHERE phase = 'total' AND "
                                  f"time >= '{since_kill}' GROUP BY meter")
                now = time.monotonic() - killed_mono
                for row in rows:
                    latency.setdefault(str(row["meter"]).removeprefix("iammeter:"), now)
                if now > limit:
                    timed_out = [d for d in devices if d not in latency]
                    for device in timed_out:
                        latency[device] = float("inf")
                    break
                await asyncio.sleep(0.25)
            await asyncio.sleep(2.0)  # a few more rounds after the last device came back
            stop.set()
            await streaming
            await watching
        finally:
            await producer.stop()

        # Everything sent after the kill in InfluxDB? (the latency of the pre-kill rounds as a baseline)
        sent_after = [t for t in feed.sent if t >= killed_at]
        missing: dict[str, int] = {}
        wait_until = time.monotonic() + 15
        while True:
            counts = await asyncio.to_thread(readings_per_meter, influx, killed_at)
            missing = {d: len(sent_after) - counts.get(d, 0) for d in devices}
            if not any(missing.values()) or time.monotonic() > wait_until:
                break
            await asyncio.sleep(0.5)
        return Result(run, session_timeout or WorkerSettings().session_timeout, victim.name, latency, affected,
                      {d: n for d, n in missing.items() if n},
                      [line for s in survivors for line in log_offsets(s, killed_at)], group_changes,
                      startup, timed_out)
    finally:
        for worker in workers:
            worker.stop()
        tansu.stop()


def fmt(seconds: float) -> str:
    return f"{seconds:5.1f}" if seconds != float("inf") else "  inf"


def report(result: Result, devices: int) -> None:
    aff = result.affected_values()
    print(f"\nrun {result.run}: session/rebalance timeout {result.timeout:g} s, killed {result.killed} "
          f"(warm-up {result.startup:.1f} s)")
    print(f"  failover (max over {devices} devices): {fmt(result.failover).strip()} s")
    print(f"  unaffected devices ({devices - len(aff)}): median {fmt(result.unaffected_median()).strip()} s, "
          f"max {fmt(max((v for d, v in result.latency.items() if not result.affected[d]), default=0)).strip()} s")
    if aff:
        print(f"  devices on the killed worker's partitions ({len(aff)}): min {aff[0]:.1f}, "
              f"median {statistics.median(aff):.1f}, max {fmt(aff[-1]).strip()} s")
    print("  per device (s): " + ", ".join(f"{d}{'*' if result.affected[d] else ''} {v:.1f}"
                                           for d, v in sorted(result.latency.items(), key=lambda kv: kv[1])))
    print("    (* = the raw partition was the killed worker's)")
    if result.timed_out:
        print(f"  NO post-kill reading within the limit for: {', '.join(result.timed_out)}")
    if result.missing:
        print(f"  post-kill readings missing in InfluxDB at the end: {result.missing}")
    else:
        print("  every reading sent after the kill is in InfluxDB")
    print("  the group as Tansu describes it after the kill (state, members):")
    for line in result.group or ["(nothing)"]:
        print(f"    {line}")
    rebalance = [line for line in result.log_lines if "rebalanc" in line.lower()]
    print(f"  survivors' log after the kill ({len(rebalance)} line(s) with 'rebalanc'; assignment and recovery lines):")
    for line in result.log_lines or ["(none)"]:
        print(f"    {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--session-timeout", type=float, default=None,
                        help="session and rebalance timeout (s); default: the worker's default setting")
    parser.add_argument("--workers", type=int, default=2, choices=range(2, 9), help="in the group (one is killed)")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs) also after a success")
    args = parser.parse_args()

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    began = time.monotonic()
    devices = choose_devices(args.devices)
    root = Path(tempfile.mkdtemp(prefix="wattstream-failover-"))
    settings = WorkerSettings()
    print(f"failover: {args.runs} run(s), session timeout "
          f"{args.session_timeout if args.session_timeout is not None else settings.session_timeout:g} s, "
          f"rebalance timeout "
          f"{args.session_timeout if args.session_timeout is not None else settings.rebalance_timeout:g} s"
          f"{'' if args.session_timeout is not None else ' (defaults)'}, {args.workers} workers, "
          f"{len(devices)} devices, "
          f"{PARTITIONS} partitions; logs in {root}", flush=True)
    results: list[Result] = []
    ok, influxd = False, None
    try:
        influxd = start_influxdb(root / "influxdb", "failover")
        for run in range(1, args.runs + 1):
            for attempt in range(1, 4):
                workdir = root / f"run{run}-{attempt}"
                try:
                    result = asyncio.run(measure(run, args.session_timeout, devices, influxd, workdir,
                                                 kill_index=run - 1, count=args.workers))
                    break
                except ImportCrash as exc:
                    if attempt == 3:
                        raise
                    print(f"run {run}: a worker crashed on start with an import error, retrying in 60 s:\n"
                          f"{str(exc)[-600:]}", flush=True)
                    time.sleep(60)
            results.append(result)
            report(result, len(devices))
            sys.stdout.flush()
        ok = True
    finally:
        if influxd is not None:
            influxd.stop()
        if ok and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"logs kept in {root}")

    print("\nrun  timeout  killed    failover (max)  unaffected median  affected median")
    for r in results:
        aff = r.affected_values()
        print(f"{r.run:>3}  {r.timeout:>5g} s  {r.killed:<8}  {fmt(r.failover)} s         "
              f"{fmt(r.unaffected_median())} s            {fmt(statistics.median(aff)) if aff else '    -'} s")
    failovers = [r.failover for r in results]
    print(f"overall: failover median {statistics.median(failovers):.1f} s, max {max(failovers):.1f} s over "
          f"{len(results)} run(s); unaffected median "
          f"{statistics.median(r.unaffected_median() for r in results):.1f} s")
    print(f"script took {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
