"""The `wattstream` command itself: its version, each subcommand's own options and the settings its `--help`
lists, a configuration error said in one line (exit status 2), and a worker or bridge that waits for Kafka."""

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from wattstream.embedded.servers import free_port


def environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    """Ours without any WATTSTREAM_* variable, plus these (a Kafka nobody listens on, unless given)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("WATTSTREAM_")}
    return env | {"WATTSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}", "WATTSTREAM_WORKER_METRICS_PORT": "0",
                  "WATTSTREAM_FILES_DIR": str(tmp_path / "data")} | settings


def wattstream(tmp_path: Path, *argv: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wattstream", *argv], env=environment(tmp_path, **settings),
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          check=False)


def test_version_is_the_installed_one(tmp_path: Path) -> None:
    result = wattstream(tmp_path, "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"wattstream {version('wattstream')}"


def test_help_lists_the_options_and_the_settings_of_the_subcommand(tmp_path: Path) -> None:
    result = wattstream(tmp_path, "bridge", "serial", "--help", WATTSTREAM_KAFKA_PASSWORD="hunter2")
    assert result.returncode == 0
    assert "--port PORT" in result.stdout and "--framing" in result.stdout
    assert "(default 115200)" in result.stdout  # an option's default
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip().startswith("WATTSTREAM_")}
    assert "(default localhost:9092)" in lines["WATTSTREAM_KAFKA_BOOTSTRAP"]
    assert "(secret)" in lines["WATTSTREAM_KAFKA_PASSWORD"] and "hunter2" not in result.stdout
    assert "WATTSTREAM_MQTT_HOST" not in lines  # not a setting of this bridge
    mqtt = wattstream(tmp_path, "bridge", "mqtt", "--help").stdout
    assert "WATTSTREAM_MQTT_HOST" in mqtt and "--port" not in mqtt


def test_bridge_options_belong_to_their_kind(tmp_path: Path) -> None:
    refused = wattstream(tmp_path, "bridge", "mqtt", "--port", "x")
    assert refused.returncode == 2 and "bridge mqtt" in refused.stderr and "--port x" in refused.stderr
    missing = wattstream(tmp_path, "bridge", "serial")
    assert missing.returncode == 2 and "--port" in missing.stderr


@pytest.mark.parametrize(("text", "named"), [
    ('[[meter]\ndriver = "iammeter"\ndevice = "X1"\n', "line 1"),
    ('[[meter]]\ndriver = "iammeter"\ndevice = "X1"\nrole = "gird"\n', "meter.0.role"),
    ('[[meter]]\ndriver = "iamemter"\ndevice = "X1"\nrole = "grid"\n', "no driver 'iamemter' (there are adw300"),
], ids=["toml-syntax", "misspelt-role", "misspelt-driver"])
@pytest.mark.parametrize("command", [["worker"], ["bridge", "mqtt"]], ids=" ".join)
def test_a_wrong_meters_file_is_one_line_and_exit_status_2(tmp_path: Path, command: list[str], text: str,
                                                             named: str) -> None:
    (tmp_path / "meters.toml").write_text(text)
    result = wattstream(tmp_path, *command, WATTSTREAM_METERS_FILE="meters.toml")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"wattstream {' '.join(command)}: meters file meters.toml: ") and named in line


@pytest.mark.parametrize(("argv", "said"), [
    (["bridge", "broute", "--port", "/dev/null"], "needs WATTSTREAM_BROUTE_ID and WATTSTREAM_BROUTE_PASSWORD"),
    (["bridge", "p1", "--port", "tcp://nowhere"], "tcp://"),
], ids=["broute-without-id", "p1-bad-address"])
def test_a_bridge_refuses_what_it_cannot_use_in_one_line(tmp_path: Path, argv: list[str], said: str) -> None:
    result = wattstream(tmp_path, *argv)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"wattstream {' '.join(argv[:2])}: ") and said in line
    assert not (tmp_path / "data").exists()  # nothing made for it (its spool)


def test_a_wrong_setting_names_its_variable(tmp_path: Path) -> None:
    result = wattstream(tmp_path, "worker", WATTSTREAM_KAFKA_PARTITIONS="none")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("wattstream worker: settings: WATTSTREAM_KAFKA_PARTITIONS: ")


def test_decode_key_is_a_setting(tmp_path: Path) -> None:
    """WATTSTREAM_DECODE_KEY through the settings (a secret: the error names the variable, not the value)."""
    result = wattstream(tmp_path, "decode", "evn", WATTSTREAM_DECODE_KEY="0011-not-hex")
    assert result.returncode == 2
    assert result.stderr.strip() == "the key of every meter (WATTSTREAM_DECODE_KEY) must be 32 hex digits"


@pytest.mark.parametrize("command", [["worker"], ["bridge", "mqtt"]], ids=" ".join)
def test_started_before_kafka_it_waits_and_stops_on_term(tmp_path: Path, command: list[str]) -> None:
    with subprocess.Popen([sys.executable, "-m", "wattstream", *command], env=environment(tmp_path), cwd=tmp_path,
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True) as proc:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # (ends when it exits: then it did not wait)
            seen.append(line)
            if "waiting for Kafka at" in line:
                break
        assert proc.poll() is None, "".join(seen)
        assert "Kafka at 127.0.0.1:" in seen[-1]
        proc.terminate()
        rest = proc.stderr.read()
        assert proc.wait(timeout=30) == 0, rest
    assert "Traceback" not in "".join(seen) + rest
