"""Acrel ADW300 end to end through the real parts: mosquitto → bridge → Tansu → worker → InfluxDB."""

from tests.conftest import Stack
from tests.frames import vectors
from tests.mqtt import publish_all

V = vectors("adw300")
TOPIC = "platform/acrel/meter/json-v2/analog/0000"


def test_both_halves_of_the_official_sample_reach_influxdb(stack: Stack) -> None:
    stack.start_pipeline()
    part1 = V["acrel-adw3xx-official-sample-part1"]["expected"]["normalized_json_used_for_derivation"]
    part2 = V["acrel-adw3xx-official-sample-part2"]["input"]
    publish_all(stack.mosquitto.port, [(TOPIC, part1), (TOPIC, part2)])
    influx = stack.influx
    rows = influx.wait_rows("SELECT * FROM readings WHERE driver = 'adw300' GROUP BY phase", count=2 + 3 + 3)
    by_time_phase = {(row["time"], row["phase"]): row for row in rows}
    total1 = by_time_phase["2021-09-17T00:51:45.057Z", "total"]
    assert total1["meter"] == "adw300:20201998111433"
    assert (total1["energy_import_wh"], total1["energy_export_wh"], total1["reactive_energy_import_varh"],
            total1["reactive_energy_export_varh"], total1["signal_strength"], total1["pt_ratio"]) == (
        45300, 11320, 6540, 990, 25, 1)
    l2 = by_time_phase["2021-09-17T00:51:48.276Z", "L2"]
    assert (l2["energy_import_wh"], l2["energy_export_wh"], l2["reactive_energy_export_varh"]) == (15200, 3730, 150)
    total2 = by_time_phase["2021-09-17T00:51:48.276Z", "total"]
    assert total2["reactive_energy_q2_varh"] == 6530 and total2["temperature_n_c"] == 0
