"""`wattstream backtest` in a subprocess: JSON lines on stdout, the summary on stderr, bad lines named."""

from __future__ import annotations

import json
import shlex
import statistics
import struct
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

from tests.profiles import PROFILES, hour_of

METERS = '[[meter]]\ndriver = "iammeter"\ndevice = "GRID"\nrole = "grid"\n\n[[site]]\nname = "home"\nphases = "auto"\n'


ROOT = Path(__file__).parent.parent


def backtest(*args: str, stdin: bytes = b"", cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "wattstream", "backtest", *args], input=stdin,
                          capture_output=True, timeout=120, check=False, cwd=cwd)


def test_the_example_of_the_commands_page_runs() -> None:
    """docs/commands.md's backtest example, exactly as written there, run from the repository root."""
    examples = [line for line in (ROOT / "docs" / "commands.md").read_text().splitlines()
                if line.startswith("wattstream backtest tests/profiles/")]
    assert len(examples) == 1, examples
    words = shlex.split(examples[0].split(">", 1)[0])
    assert words[:2] == ["wattstream", "backtest"]
    result = backtest(*words[2:], cwd=ROOT)
    assert result.returncode == 0, result.stderr
    signals = [json.loads(line) for line in result.stdout.splitlines()]
    assert signals and all("surplus_w" in s and s["site"] == "home" for s in signals)


def test_surplus_on_a_recorded_day_with_the_summary(tmp_path: Path) -> None:
    meters = tmp_path / "meters.toml"
    meters.write_text(METERS)
    result = backtest(str(PROFILES / "clouds.jsonl.gz"), "--meters", str(meters), "--simulate-charger")
    assert result.returncode == 0, result.stderr
    signals = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(signals) == 5760 and {s["site"] for s in signals} == {"home"}
    starts = sum(1 for a, b in pairwise(signals) if b["charge"] and not a["charge"])
    summary = result.stderr.decode()
    assert f"{starts} starts" in summary and "phase switches" in summary and "kWh from the grid" in summary


def test_averages_and_debounce_from_stdin_and_bad_lines(tmp_path: Path) -> None:
    lines = [json.dumps({"meter_id": "m:1", "driver": "m", "ts": f"2025-06-01T10:{m:02d}:{s:02d}Z",
                         "received_at": f"2025-06-01T10:{m:02d}:{s:02d}Z", "total": {"power_w": m * 60 + s + 0.1}})
             for m in range(0, 23) for s in (0, 30)]
    stdin = ("\n".join(lines[:5]) + "\nnot json\n" + "\n".join(lines[5:]) + "\n").encode()
    averages = backtest("--emit", "averages", stdin=stdin)
    assert averages.returncode == 1 and b"line 6: not a Reading" in averages.stderr
    out = [json.loads(line) for line in averages.stdout.splitlines()]
    assert [a["start"] for a in out] == ["2025-06-01T10:00:00Z", "2025-06-01T10:10:00Z"]
    assert out[0]["total"]["power_w"]["mean"] == statistics.mean(m * 60 + s + 0.1 for m in range(10) for s in (0, 30))
    assert b"1 window(s) still open" in averages.stderr
    debounce = backtest("--emit", "debounce", stdin="\n".join(lines).encode())
    assert [json.loads(line)["ts"] for line in debounce.stdout.splitlines()] == [
        "2025-06-01T10:00:00Z", "2025-06-01T10:05:00Z", "2025-06-01T10:10:00Z", "2025-06-01T10:15:00Z",
        "2025-06-01T10:20:00Z"]


def test_mode_commands_among_the_readings_and_the_picture_of_the_day(tmp_path: Path) -> None:
    meters = tmp_path / "meters.toml"
    meters.write_text(METERS.replace("role = \"grid\"\n", "role = \"grid\"\n\n[[charger]]\nname = \"car\"\n"
                                     "format = \"wattstream\"\n", 1))
    hour = [r for r in hour_of("clear", 10) if r.meter_id == "iammeter:GRID"]
    command = json.dumps({"site": "home", "charger": "car", "mode": "now", "target_kwh": 1, "at": "2025-06-21T10:30Z"})
    lines = [r.to_json().decode() for r in hour]
    stdin = "\n".join([*lines[:180], command, *lines[180:]]).encode()
    picture = tmp_path / "day.png"
    result = backtest("--meters", str(meters), "--simulate-charger", "--plot", str(picture), stdin=stdin)
    assert result.returncode == 0, result.stderr
    modes = [json.loads(line)["chargers"]["car"]["mode"] for line in result.stdout.splitlines()]
    assert modes[:180] == ["pv"] * 180 and modes[180] == "now" and modes[-1] == "pv"  # 1 kWh, then back to pv
    png = picture.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1400, 900)
    assert f"the day's picture is in {picture}" in result.stderr.decode()
