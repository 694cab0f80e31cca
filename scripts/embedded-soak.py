"""How the embedded run holds up when left running: `wattstream run` for a while, every process's memory
sampled, Kafka rotated when Tansu grows past `--kafka-mb`, and the daily files checked at the end.

    .venv/bin/python scripts/embedded-soak.py [--minutes 30] [--interval 0.2] [--kafka-mb 256] [--keep]

`--interval 0.2` is ten times the demo's rate (`wattstream run` publishes every 2 s by default). Prints,
per process (Tansu, mosquitto, the worker, each bridge, the charger, the simulator, the run itself), its
memory at the start and the end and at its highest, and its growth in MB per hour over the part after the
first five minutes (a least-squares line through the samples, the processes of one role summed, a
rotation's new Tansu or worker included); then the rotations and what the files hold: the lines
of the meters with their own clock written twice (there must be none; counted at intervals of 1 s and
more, when a meter's readings do not share their second) and the longest gaps between an Acrel meter's
readings (a second or two, also across a rotation).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

from wattstream.embedded.servers import rss_mb

ROLES = {"tansu": "tansu", "mosquitto": "mosquitto", "amqtt": "mosquitto", "wattstream worker": "worker",
         "bridge mqtt": "bridge mqtt", "bridge serial": "bridge serial", "bridge broute": "bridge broute",
         "wattstream charger": "charger", "wattstream simulate": "simulator"}
SAMPLE_SECONDS = 15.0
START_SECONDS = 60.0  # "start" is the first sample after this (every process up)
WARM_UP_SECONDS = 300.0


def role(pid: int) -> str | None:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    return next((name for pattern, name in ROLES.items() if pattern in command), None)


def memory(run: int) -> dict[str, float]:
    """RSS in MB per role of the run's children, and of the run itself."""
    found: dict[str, float] = defaultdict(float)
    children = {int(pid) for task in Path(f"/proc/{run}/task").iterdir()  # Tansu is started again from a thread
                for pid in (task / "children").read_text().split()}
    for pid in [run, *children]:
        name = "run" if pid == run else role(pid)
        if name is not None:
            with contextlib.suppress(OSError):  # (it ended meanwhile)
                found[name] += rss_mb(pid)
    return found


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_m = sum(m for _, m in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return 3600 * sum((t - mean_t) * (m - mean_m) for t, m in points) / spread if spread else 0.0


def check_files(data: Path, interval: float) -> None:
    """Meters with their own clock (Acrel, EVN): a line twice is a reading written twice; a gap, readings
    missing (IAMMETER is stamped on receipt: what waited during a rotation shares one second)."""
    lines = [line for path in sorted(data.glob("2*-wattstream.txt")) for line in path.read_text().splitlines()]
    clocked = Counter(line for line in lines if ",adw300:" in line or ",evn:" in line)
    twice: object = len([line for line, n in clocked.items() if n > 1])
    if interval < 1:
        twice = "not counted (under 1 s apart, a meter's readings share their second)"
    stamps = sorted(datetime.strptime(line.split(",")[0], "%Y/%m/%d %H:%M:%S") for line in lines
                    if ",adw300:20201998111433,power_w," in line)
    gaps = sorted((b - a).total_seconds() for a, b in itertools.pairwise(stamps))
    print(f"files: {len(lines):,} lines; Acrel/EVN lines twice: {twice}; adw300:20201998111433 readings "
          f"{len(stamps):,}, longest gaps {gaps[-3:]} s (interval {interval} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--kafka-mb", type=float, default=256)
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (files, logs)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wattstream-soak-"))
    env = {**os.environ, "WATTSTREAM_FILES_DIR": str(work / "data"), "WATTSTREAM_FILES_TZ": "UTC"}
    env.pop("WATTSTREAM_INFLUX_URL", None)
    output = (work / "run.log").open("w")
    run = subprocess.Popen([sys.executable, "-m", "wattstream", "run", "--interval", str(args.interval),
                            "--kafka-mb", str(args.kafka_mb)], cwd=work, env=env, stdout=output,
                           stderr=subprocess.STDOUT)
    samples: list[tuple[float, dict[str, float]]] = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < args.minutes * 60 and run.poll() is None:
            samples.append((time.monotonic() - started, memory(run.pid)))
            time.sleep(SAMPLE_SECONDS)
        run.send_signal(signal.SIGTERM)
        run.wait(300)  # the clients' stops and the snapshot
    finally:
        if run.poll() is None:
            run.kill()
        output.close()
    log = (work / "run.log").read_text()
    print(f"{args.minutes:.0f} min at one payload per meter every {args.interval} s, --kafka-mb {args.kafka_mb:.0f}; "
          f"run exited {run.returncode}")
    print(f"{'process':<14} {'start':>7} {'end':>7} {'highest':>8} {'MB/h after 5 min':>17}")
    for name in sorted({name for _, found in samples for name in found}):
        series = [(t, found[name]) for t, found in samples if name in found and t >= START_SECONDS]
        late = [(t, m) for t, m in series if t >= WARM_UP_SECONDS]
        print(f"{name:<14} {series[0][1]:7.0f} {series[-1][1]:7.0f} {max(m for _, m in series):8.0f} "
              f"{slope_per_hour(late):17.1f}")
    for name in ("tansu", "run"):  # a sample a minute
        print(f"{name} MB by minute: " + " ".join(f"{found.get(name, 0):.0f}" for t, found in samples
                                                   if int(t) % 60 < SAMPLE_SECONDS))
    print(f"rotations: {log.count('Kafka: rotated')}  " + "; ".join(
        line.strip() for line in log.splitlines() if line.startswith("Kafka: rotated")))
    check_files(work / "data", args.interval)
    if args.keep:
        print(f"kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if run.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
