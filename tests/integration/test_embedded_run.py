"""`wattstream run`: the embedded default brings up everything, shows readings live, writes the daily
file, toggles debug logs on USR1, starts a new Kafka from a snapshot on USR2 and stops cleanly on a signal;
started again, it goes on from the snapshot of its stop."""

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
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


def run(tmp_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "WATTSTREAM_FILES_DIR": str(tmp_path / "data"), "WATTSTREAM_FILES_TZ": "UTC",
           "WATTSTREAM_WINDOWS_AVERAGE_SECONDS": "10", "WATTSTREAM_WINDOWS_GRACE_SECONDS": "1"}
    env.pop("WATTSTREAM_INFLUX_URL", None)
    return subprocess.Popen([sys.executable, "-m", "wattstream", "run", "--interval", "1"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stopped(proc: subprocess.Popen[str], seen: list[str]) -> str:
    """Its whole output once it stopped cleanly on TERM."""
    try:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        assert proc.stdout is not None
        output = "".join(seen) + proc.stdout.read()
        assert code == 0, f"exited with {code}:\n{output[-3000:]}"
        return output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_run_shows_readings_writes_the_daily_file_rotates_kafka_and_goes_on_after_a_restart(tmp_path: Path) -> None:
    proc = run(tmp_path)
    seen: list[str] = []
    try:
        wait_output(proc, "iammeter:5A1E0003", 90, seen)  # the three-phase simulated meter, live
        wait_output(proc, "mqtt_json:shellypro3em-c8f09e8a1b2c", 30, seen)  # a JSON preset (Shelly Pro 3EM)
        wait_output(proc, "mqtt_json:114182912345", 30, seen)  # a one-value-per-topic preset (OpenDTU)
        wait_output(proc, "dsmr:SIM0000000000001", 30, seen)  # a DSMR 5 meter behind an ESP P1 reader
        wait_output(proc, "site demo: surplus", 60, seen)  # the PV site's decisions, live
        deadline = time.monotonic() + 40
        while not list((tmp_path / "data").glob("sum2*-wattstream.txt")) and time.monotonic() < deadline:
            time.sleep(0.5)
        proc.send_signal(signal.SIGUSR1)
        proc.send_signal(signal.SIGUSR2)  # a new Kafka from a snapshot, as when Tansu has grown too large
        wait_output(proc, "Kafka: rotated", 90, seen)
        worker_log = tmp_path / "data" / "logs" / "worker.log"
        deadline = time.monotonic() + 90
        while worker_log.read_text().count("Worker]: Ready") < 2 and time.monotonic() < deadline:
            time.sleep(0.5)  # the worker on the new Kafka
        written = len(read_lines(tmp_path))
        while len(read_lines(tmp_path)) == written and time.monotonic() < deadline:
            time.sleep(0.5)  # and what it writes
    finally:
        output = stopped(proc, seen)
    assert output.count("going on from the snapshot") == 1  # the rotation's, from a snapshot of the old Kafka
    assert (tmp_path / "data" / "state" / "kafka-snapshot.jsonl").exists()  # the stop's
    first_run = read_lines(tmp_path)

    again, seen_again = run(tmp_path), []
    try:
        wait_output(again, "going on from the snapshot", 60, seen_again)
        wait_output(again, "iammeter:5A1E0003", 90, seen_again)
    finally:
        stopped(again, seen_again)
    lines = read_lines(tmp_path)
    assert len(lines) > len(first_run)
    # meters with their own clock (Acrel, EVN: the time is in the payload): no line twice across the
    # rotation and the restart, and across the rotation no reading missing: while the bridge was stopped,
    # the messages waited in mosquitto. (A meter without one, IAMMETER, is stamped when the bridge receives
    # a message: those that waited share the second they were delivered in.)
    clocked = Counter(line for line in lines if ",adw300:" in line or ",evn:" in line)
    assert [line for line, n in clocked.items() if n > 1] == []
    stamps = sorted(datetime.strptime(line.split(",")[0], "%Y/%m/%d %H:%M:%S") for line in first_run
                    if ",adw300:20201998111433,power_w," in line)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    assert max(gaps) <= 3, f"readings of the ADW300 missing across the rotation: gaps {sorted(gaps)[-5:]}"
    check_output_and_files(tmp_path, output)


def read_lines(tmp_path: Path) -> list[str]:
    return [line for path in sorted((tmp_path / "data").glob("2*-wattstream.txt"))
            for line in path.read_text().splitlines()]


def check_output_and_files(tmp_path: Path, output: str) -> None:
    assert "Kafka (Tansu) on" in output and "stopped" in output
    assert "dead letters 0" in output

    [daily] = (tmp_path / "data").glob("2*-wattstream.txt")
    lines = daily.read_text().splitlines()
    meters = {line.split(",")[1] for line in lines}
    assert meters == {"iammeter:5A1E0001", "iammeter:5A1E0003", "adw300:20201998111433", "adw300:ADW310SIM01",
                      "evn:4B464D5349000001", "lines:garden", "broute:sim-jp",
                      "iammeter:5A1E00G1", "iammeter:5A1E00P1", "iammeter:5A1E00C1",
                      "mqtt_json:shellypro3em-c8f09e8a1b2c", "mqtt_json:114182912345", "mqtt_json:demo-battery",
                      "dsmr:SIM0000000000001", "dsmr:SIM0000000000001-gas"}
    assert any(",L3.power_w," in line for line in lines)
    assert any("adw300:20201998111433,temperature_l1_c," in line for line in lines)
    assert any("evn:4B464D5349000001,energy_import_wh," in line for line in lines)
    assert any("lines:garden,humidity_pct," in line for line in lines)
    assert any("broute:sim-jp,energy_import_wh," in line for line in lines)
    assert any("mqtt_json:shellypro3em-c8f09e8a1b2c,L2.energy_export_wh," in line for line in lines)
    assert any("mqtt_json:114182912345,dc2_power_w," in line for line in lines)
    assert any("dsmr:SIM0000000000001-gas,volume_m3," in line for line in lines)
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
