"""IAMMETER end to end through the real parts: mosquitto → bridge → Tansu → worker → InfluxDB."""

from __future__ import annotations

import asyncio
import json

from pipeline import topics
from tests.conftest import Stack
from tests.frames import vectors
from tests.kafka import deadletters
from tests.mqtt import publish_all

V = vectors("iammeter")


def payload(vector_id: str) -> str:
    return str(V[vector_id]["input"])


def three_phase_with_reactive() -> str:
    body = json.loads(payload("iammeter-doc-three-phase"))
    body.update(json.loads(payload("iammeter-doc-reactive-EA")))
    return json.dumps(body)


def test_captured_payloads_reach_influxdb_with_exact_values(stack: Stack) -> None:
    stack.start_pipeline()
    publish_all(stack.mosquitto.port, [
        ("device/DA2BED94/realtime", payload("iammeter-doc-single-phase")),
        ("device/5DB50BF4/realtime", three_phase_with_reactive()),
        ("device/AB12CD34/realtime", payload("iammeter-doc-three-phase-nem")),  # SN from the topic
        ("device/wem3162/realtime", payload("iammeter-legacy-wem3162-monitorjson")),
    ])
    influx = stack.influx
    rows = influx.wait_rows('SELECT * FROM readings GROUP BY "meter", "phase"', count=1 + 4 + 4 + 1)
    by_scope = {(row["meter"], row["phase"]): row for row in rows}
    assert len(by_scope) == 10, sorted(by_scope)

    single = by_scope["iammeter:DA2BED94", "total"]
    assert (single["voltage_v"], single["current_a"], single["power_w"], single["power_factor"],
            single["frequency_hz"]) == (226.85, 1.31, 152, 0.51, 49.97)
    assert (single["energy_import_wh"], single["energy_export_wh"]) == (22920380, 0)
    assert single["driver"] == "iammeter"

    l3 = by_scope["iammeter:5DB50BF4", "L3"]
    assert (l3["voltage_v"], l3["current_a"], l3["power_w"], l3["energy_import_wh"], l3["power_factor"],
            l3["reactive_power_var"], l3["reactive_energy_import_varh"],
            l3["reactive_energy_export_varh"]) == (226.1, 1.42, 199, 427346, 0.62, -118, 7, 256485)
    total = by_scope["iammeter:5DB50BF4", "total"]
    assert (total["power_w"], total["energy_import_wh"]) == (593, 1274549)

    net = by_scope["iammeter:AB12CD34", "total"]
    assert (net["power_w"], net["energy_import_wh"], net["power_factor"]) == (594, 1275075, 0.62)
    assert net["voltage_v"] is None  # the NEM row's reference voltage is not a measurement

    legacy = by_scope["iammeter:wem3162", "total"]
    assert (legacy["voltage_v"], legacy["current_a"], legacy["energy_import_wh"]) == (235, 1.214, 1265170)

    # integer fields stay integers in InfluxDB (exact energy)
    types = {row["fieldKey"]: row["fieldType"] for row in influx.query("SHOW FIELD KEYS FROM readings")}
    assert types["energy_import_wh"] == "integer" and types["power_w"] == "float"


def test_garbage_goes_to_the_dead_letter_topic_and_the_worker_goes_on(stack: Stack) -> None:
    worker, _ = stack.start_pipeline()
    publish_all(stack.mosquitto.port, [
        ("device/BAD00001/realtime", b"\x00garbage{"),
        ("device/BAD00001/realtime", b'{"SN":"BAD00001","Data":[1,2]}'),
        ("device/DA2BED94/realtime", payload("iammeter-doc-single-phase")),
    ])
    rows = stack.influx.wait_rows("SELECT power_w FROM readings WHERE meter = 'iammeter:DA2BED94'", count=1)
    assert [row["power_w"] for row in rows] == [152]

    dead = asyncio.run(deadletters(stack.tansu.address, b"BAD00001"))
    assert [value for value, _ in dead] == [b"\x00garbage{", b'{"SN":"BAD00001","Data":[1,2]}']
    first, second = (headers for _, headers in dead)
    assert first[topics.H_STAGE] == b"frame" and b"not JSON" in first[topics.H_ERROR]
    assert b"must be a list of 7 numbers" in second[topics.H_ERROR]
    assert first[topics.H_SOURCE_TOPIC] == topics.raw_topic("iammeter").encode()
    # the bridge's headers travel with the bytes
    assert first[topics.H_DRIVER] == b"iammeter" and first[topics.H_ORIGIN] == b"device/BAD00001/realtime"
    assert first[topics.H_RECEIVED_AT].endswith(b"Z")
    assert worker.proc.poll() is None
