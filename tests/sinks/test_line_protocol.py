"""`sinks.line_protocol` writes exactly what influxdb-client's `Point.to_line_protocol()` writes, for every
kind of record and for the awkward cases (escapes, a last backslash, non-finite floats, no fields)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from influxdb_client import Point, WritePrecision

from pipeline.models import Average, ChargerDecision, Reading, Stats, SurplusSignal, Values
from pipeline.sinks import Debounced
from pipeline.sinks.influx import lines
from pipeline.sinks.line_protocol import Field, line, series

TS = datetime(2025, 6, 1, 10, 0, 5, 120000, tzinfo=UTC)


def client(measurement: str, tags: dict[str, str], fields: dict[str, Field], ts: int) -> str:
    point = Point(measurement).time(ts, WritePrecision.US)
    for name, value in tags.items():
        point.tag(name, value)
    for name, value in fields.items():
        point.field(name, value)
    return str(point.to_line_protocol())


@pytest.mark.parametrize(("tags", "fields"), [
    ({"meter": "iammeter:X", "driver": "iammeter", "phase": "total"}, {"power_w": 593.0, "energy_import_wh": 12}),
    ({"meter": "lines:unit 1,a=b", "driver": "lines", "phase": "L1"}, {"temp c": 21.25, "x=y": -0.5}),
    ({"site": "back\\"}, {"reason": 'say "hi" \\ there', "charging": 1, "on": True, "off": False}),
    ({"meter": "m", "empty": ""}, {"nan": math.nan, "inf": -math.inf, "tiny": 1e-300, "big": 1.5e300, "n": -7}),
    ({"meter": "tab\there\nnew"}, {"v": 2.0}),
])
def test_a_line_is_what_the_client_writes(tags: dict[str, str], fields: dict[str, Field]) -> None:
    ts = 1748772005120000
    assert line(series("readings", tags), fields, ts) == client("readings", tags, fields, ts)


def test_no_writable_field_no_line() -> None:
    assert line(series("readings", {"meter": "m"}), {"nan": math.nan}, 1) is None
    assert client("readings", {"meter": "m"}, {"nan": math.nan}, 1) == ""


def test_every_record_maps_to_the_clients_points() -> None:
    reading = Reading(meter_id="iammeter:5DB50BF4", driver="iammeter", ts=TS, received_at=TS,
                      total=Values(power_w=593.0, energy_import_wh=1274549, frequency_hz=50.01),
                      phases={"L1": Values(voltage_v=226.2, power_w=197.0, power_factor=-0.87), "L2": Values()},
                      extra={"temperature_c": 21.25})
    stats = {"power_w": Stats(mean=500.5, min=400.0, max=650.0, count=3),
             "energy_import_wh": Stats(mean=1000001.0, min=1000000, max=1000002, count=3, delta=2)}
    average = Average(meter_id="iammeter:5DB50BF4", driver="iammeter", start=TS, end=TS + timedelta(minutes=10),
                      count=3, total=stats, phases={"L3": stats}, extra={"temperature_c": stats["power_w"]})
    car = ChargerDecision(charge=True, phases=3, current_a=8.0, power_w=5520.0, mode="now", reason="now: 3p 8 A",
                          target_kwh=10.0, charged_kwh=1.5)
    signal = SurplusSignal(site="home", ts=TS, grid_w=-2000.0, pv_w=3100.5, battery_w=-200.0, battery_soc=55.5,
                           surplus_w=2000.0, charge=True, phases=3, current_a=8.0, power_w=5520.0,
                           reason="start: it is sunny", chargers={"car": car})
    tags = {"meter": reading.meter_id, "driver": "iammeter"}
    us = 1748772005120000
    assert lines(reading) == [
        client("readings", tags | {"phase": "total"}, {**reading.total.present(), **reading.extra}, us),
        client("readings", tags | {"phase": "L1"}, reading.phases["L1"].present(), us)]
    assert lines(Debounced(reading))[0] == client("readings_5m", tags | {"phase": "total"},
                                                  {**reading.total.present(), **reading.extra}, us)
    per_field = {f"{name}_{part}": value for name, s in stats.items()
                 for part, value in (("mean", s.mean), ("min", s.min), ("max", s.max), ("count", s.count),
                                     ("delta", s.delta)) if value is not None}
    extra = {f"temperature_c_{part}": value for part, value in (("mean", 500.5), ("min", 400.0), ("max", 650.0),
                                                                 ("count", 3))}
    assert lines(average) == [client("averages_10m", tags | {"phase": "total"}, per_field | extra, us),
                              client("averages_10m", tags | {"phase": "L3"}, per_field, us)]
    assert lines(signal) == [client("surplus", {"site": "home"}, {
        "grid_w": -2000.0, "pv_w": 3100.5, "charger_w": 0.0, "surplus_w": 2000.0, "charging": 1, "phases": 3,
        "current_a": 8.0, "power_w": 5520.0, "reason": "start: it is sunny", "battery_w": -200.0,
        "battery_soc": 55.5}, us), client("charger", {"site": "home", "charger": "car"}, {
            "charging": 1, "phases": 3, "current_a": 8.0, "power_w": 5520.0, "mode": "now", "charged_kwh": 1.5,
            "reason": "now: 3p 8 A"}, us)]
