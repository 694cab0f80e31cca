"""EVN end to end: hex frames on `sensors/smartmeter` → bridge → Tansu → worker (key from the meters
file) → InfluxDB, also a telegram split over two messages; a telegram for a meter without a key is
dead-lettered with stage `decrypt`."""

import asyncio

from tests.conftest import Stack
from tests.frames import vectors
from tests.kafka import deadletters
from tests.mqtt import publish_all

V = vectors("evn")
NOE, SAG = V["evn-netznoe-doc-kaifa-ma309"], V["evn-energyagent-sagemcom-sagy-68fafa"]
TINETZ = V["tinetz-kaifa-example-suite1"]


def test_encrypted_frames_reach_influxdb_and_unknown_meters_are_dead_letters(stack: Stack) -> None:
    meters = stack.workdir / "meters.toml"
    meters.write_text(f'[[meter]]\ndriver = "evn"\ndevice = "4B464D6750000009"\nkey = "{NOE["key"]}"\n'
                      f'role = "grid"\n\n[[meter]]\ndriver = "evn"\ndevice = "4B464D1010000023"\n'
                      f'key = "{TINETZ["key"]}"\n')
    stack.env["WATTSTREAM_METERS_FILE"] = str(meters)
    worker, _ = stack.start_pipeline()
    tinetz = TINETZ["input"]
    publish_all(stack.mosquitto.port, [("sensors/smartmeter", SAG["input"]), ("sensors/smartmeter", NOE["input"]),
                                       ("sensors/smartmeter", tinetz[:300]), ("sensors/smartmeter", tinetz[300:])])

    rows = stack.influx.wait_rows("SELECT * FROM readings WHERE driver = 'evn' GROUP BY phase", count=4)
    by_phase = {row["phase"]: row for row in rows}
    assert by_phase["total"]["meter"] == "evn:4B464D6750000009"
    assert by_phase["total"]["time"] == "2021-09-27T07:47:15Z"
    assert (by_phase["total"]["energy_import_wh"], by_phase["total"]["power_factor"]) == (12937, 1)
    assert by_phase["L1"]["voltage_v"] == 233.7
    # a telegram split over two MQTT messages (the worker keeps the first part per origin)
    split = stack.influx.wait_rows("SELECT * FROM readings WHERE meter = 'evn:4B464D1010000023'", count=1)
    assert [(r["energy_import_wh"], r["voltage_v"]) for r in split] == [(9108, 230.8)]

    [(value, headers)] = asyncio.run(deadletters(stack.tansu.address, b"sensors/smartmeter"))
    assert value == SAG["input"].encode()
    assert headers["stage"] == b"decrypt" and b"no key for EVN meter with system title 5341475905E990F3" in (
        headers["error"])
    assert NOE["key"].encode() not in worker.log.read_bytes()
