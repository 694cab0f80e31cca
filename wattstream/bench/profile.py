"""`wattstream bench --profile`: py-spy samples the worker and the hottest frames are printed."""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
from pathlib import Path


def start_profiler(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not found (pip install py-spy); no profile", file=sys.stderr)
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200",
                             "--format", "raw", "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_profile(path: Path, top: int = 15) -> str:
    """Self time per frame, inclusive time per package and per function of wattstream's own, from py-spy's
    collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
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
        for function in {f.split(":")[0] + ")" for f in frames if " (pipeline/" in f or " (bridges/" in f}:
            ours[function] += n
    lines = [f"profile: {total} samples; hottest frames (self time):"]
    lines += [f"  {100 * n / total:5.1f}%  {frame[:110]}" for frame, n in own.most_common(top)]
    lines += ["inclusive time by package:"]
    lines += [f"  {100 * n / total:5.1f}%  {module}" for module, n in inclusive.most_common(top)]
    lines += ["inclusive time by function of wattstream:"]
    lines += [f"  {100 * n / total:5.1f}%  {function[:110]}" for function, n in ours.most_common(2 * top)]
    return "\n".join(lines)
