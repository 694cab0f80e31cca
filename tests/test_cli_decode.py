"""`wattstream decode iammeter`: one payload per line in, one Reading JSON per line out."""

import json
import subprocess
import sys

from tests.frames import vectors

V = vectors("iammeter")


def decode(stdin: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "wattstream", "decode", "iammeter", *args], input=stdin,
                          capture_output=True, timeout=60, check=False)


def one_line(vector_id: str) -> bytes:
    return json.dumps(json.loads(V[vector_id]["input"])).encode()


def test_decodes_every_line_and_reports_bad_ones() -> None:
    stdin = b"\n".join([one_line("iammeter-doc-single-phase"), b"not json", b"",
                        one_line("iammeter-doc-three-phase")]) + b"\n"
    result = decode(stdin)
    assert result.returncode == 1
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["meter_id"] for r in out] == ["iammeter:DA2BED94", "iammeter:5DB50BF4"]
    assert out[0]["total"] == {"voltage_v": 226.85, "current_a": 1.31, "power_w": 152.0, "power_factor": 0.51,
                               "frequency_hz": 49.97, "energy_import_wh": 22920380, "energy_export_wh": 0}
    assert out[1]["phases"]["L2"]["energy_import_wh"] == 423527
    assert out[0]["ts"].endswith("Z")
    assert result.stderr.decode().strip() == (
        "line 2: frame error: iammeter payload is not JSON "
        "(Expecting value: line 1 column 1 (char 0)): b'not json'")


def test_all_good_exits_zero_and_device_option_names_legacy_meters() -> None:
    result = decode(V["iammeter-legacy-wem3162-monitorjson"]["input"].encode() + b"\n", "--device", "kitchen")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["meter_id"] == "iammeter:kitchen"


def test_broute_scaling_is_carried_across_lines() -> None:
    frames = [
        "1081000102880105FF017201E00400000064",  # E0 = 100 before the scaling is known
        "1081232802880105FF017201D30400000001",  # D3 = 1
        "1081000102880105FF017201E10101",  # E1 = 0.1 kWh
        "1081000102880105FF017201E00400000064",  # E0 = 100 → 10 kWh
        "1081000102880105FF017201E704000004A5",  # E7 = 1189 W
    ]
    result = subprocess.run([sys.executable, "-m", "wattstream", "decode", "broute", "--device", "JP01"],
                            input="\n".join(frames).encode(), capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["total"] for r in out] == [{"energy_import_wh": 10000}, {"power_w": 1189.0}]
    assert out[0]["meter_id"] == "broute:JP01"
    assert b"line 1: 1 energy value(s) left out until D3/E1 are known" in result.stderr


def test_mqtt_json_with_a_preset_reads_mosquitto_sub_lines() -> None:
    """`mosquitto_sub -v | wattstream decode mqtt_json --topics --preset ...`: the device from the topic
    as the bridge takes it, one value per topic gathered per device across lines."""
    from tests.frames import FRAMES

    def run(preset: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "wattstream", "decode", "mqtt_json", "--topics", "--preset",
                               preset], input=stdin, capture_output=True, timeout=60, check=False)

    result = run("shelly_pro_3em", (FRAMES / "mqtt_json" / "shelly_pro_3em.txt").read_bytes())
    assert result.returncode == 0, result.stderr
    power, energy = (json.loads(line) for line in result.stdout.splitlines())
    assert power["meter_id"] == "mqtt_json:shellypro3em" and power["total"]["power_w"] == 594.006
    assert energy["total"] == {"energy_import_wh": 345628, "energy_export_wh": 1247}
    opendtu = (FRAMES / "mqtt_json" / "opendtu.txt").read_bytes()  # `mosquitto_sub -v -t 'solar/#'`
    result = run("opendtu", opendtu * 2 + b"solar/114172608275/0/power oops\n")
    assert result.returncode == 1
    assert [json.loads(line)["total"]["power_w"] for line in result.stdout.splitlines()] == [-5.7, -5.7]
    assert result.stderr.decode().splitlines() == [
        "line 67: decode error: mqtt_json: 0/power is not a number: 'oops'",
        "46 line(s) on topics the bridge does not subscribe for mqtt_json: left out"]
