"""`wattstream run`: the embedded default brings up everything, shows readings live, writes the daily
file, toggles debug logs on USR1 and stops cleanly on a signal."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def wait_output(proc: subprocess.Popen[str], needle: str, timeout: float, seen: list[str]) -> None:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            seen.append(line)
            if needle in line:
                return
        elif proc.poll() is not None:
            break
        else:
            time.sleep(0.1)
    raise AssertionError(f"no {needle!r} within {timeout}s; output:\n{''.join(seen)}")


def test_run_shows_readings_writes_the_daily_file_and_stops_on_signal(tmp_path: Path) -> None:
    env = {**os.environ, "WATTSTREAM_FILES_DIR": str(tmp_path / "data"), "WATTSTREAM_FILES_TZ": "UTC",
           "WATTSTREAM_WINDOWS_AVERAGE_SECONDS": "10", "WATTSTREAM_WINDOWS_GRACE_SECONDS": "1"}
    env.pop("WATTSTREAM_INFLUX_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--interval", "0.5"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    try:
        wait_output(proc, "iammeter:5A1E0003", 90, seen)  # the three-phase simulated meter, live
        wait_output(proc, "site demo: surplus", 60, seen)  # the PV site's decisions, live
        deadline = time.monotonic() + 40
        while not list((tmp_path / "data").glob("sum2*-wattstream.txt")) and time.monotonic() < deadline:
            time.sleep(0.5)
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert proc.stdout is not None
        output = "".join(seen) + proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert "Kafka (Tansu) on" in output and "stopped" in output
    assert "dead letters 0" in output

    [daily] = (tmp_path / "data").glob("2*-wattstream.txt")
    lines = daily.read_text().splitlines()
    meters = {line.split(",")[1] for line in lines}
    assert meters == {"iammeter:5A1E0001", "iammeter:5A1E0003", "adw300:20201998111433", "adw300:ADW310SIM01",
                      "evn:4B464D5349000001", "lines:garden", "broute:sim-jp",
                      "iammeter:5A1E00G1", "iammeter:5A1E00P1", "iammeter:5A1E00C1"}
    assert any(",L3.power_w," in line for line in lines)
    assert any("adw300:20201998111433,temperature_l1_c," in line for line in lines)
    assert any("evn:4B464D5349000001,energy_import_wh," in line for line in lines)
    assert any("lines:garden,humidity_pct," in line for line in lines)
    assert any("broute:sim-jp,energy_import_wh," in line for line in lines)
    date, clock = lines[0].split(",")[0].split(" ")
    assert daily.name.startswith(date.replace("/", "")) and len(clock) == 8

    # the 10-second windows of this run in the kei-style sum file: YYYY/MM/DD hh:mm,UnitID,SensorID,Average
    [summary] = (tmp_path / "data").glob("sum2*-wattstream.txt")
    sums = [line.split(",") for line in summary.read_text().splitlines()]
    assert all(len(fields) == 4 and len(fields[0]) == 16 for fields in sums)
    assert {"iammeter:5A1E00G1", "evn:4B464D5349000001"} <= {fields[1] for fields in sums}
    assert any(fields[2] == "energy_import_wh_delta" and fields[3].isdigit() for fields in sums)

    charger_log = (tmp_path / "data" / "logs" / "charger.log").read_text()
    assert "following power.surplus" in charger_log
    worker_log = (tmp_path / "data" / "logs" / "worker.log").read_text()
    assert "log level now DEBUG" in worker_log
