"""`mqtt_json`: the shipped presets on captured messages (tests/frames/mqtt_json/), field by field; the
meters file's own mappings; what does not match its mapping."""

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.drivers import DRIVERS, Config, Received, routes
from pipeline.drivers.mqtt_json_mapping import JsonMapping, Mappings
from pipeline.errors import FrameError, IngestError, MissingField, UnknownField
from pipeline.meters_file import MetersFile
from pipeline.models import Reading, Values
from tests.frames import FRAMES

AT = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


def config(*mappings: dict[str, object]) -> Config:
    return Config(mappings=Mappings.of(tuple(JsonMapping.model_validate(m) for m in mappings)))


def captured(name: str, times: int = 1) -> list[tuple[str, bytes]]:
    lines = (FRAMES / "mqtt_json" / name).read_bytes().splitlines() * times
    return [(topic.decode(), payload) for topic, _, payload in (line.partition(b" ") for line in lines)]


def decode(messages: list[tuple[str, bytes]], cfg: Config) -> list[Reading]:
    """As the bridge and the worker do it: only subscribed topics, keyed by the route's device, the
    driver's state carried per device."""
    table, states, out = routes(cfg), dict[str, bytes](), []
    for topic, payload in messages:
        route = next((r for driver, r in table.values() if driver == "mqtt_json" and r.matches(topic)), None)
        if route is None:
            continue
        device = route.key(topic)
        decoded = DRIVERS["mqtt_json"].decode(Received(payload, AT, device, topic), states.get(device, b""), cfg)
        states[device] = decoded.state
        out += decoded.readings
    return out


def test_shelly_pro_3em_every_field() -> None:
    power, energy = decode(captured("shelly_pro_3em.txt"), config({"preset": "shelly_pro_3em"}))
    assert power.meter_id == energy.meter_id == "mqtt_json:shellypro3em"
    assert power.ts == power.received_at == AT
    assert power.total == Values(power_w=594.006, apparent_power_va=960.806, current_a=4.159)
    assert power.phases == {
        "L1": Values(power_w=145.4, apparent_power_va=277.1, voltage_v=230.8, current_a=1.201, power_factor=0.68,
                     frequency_hz=50.0),
        "L2": Values(power_w=90.3, apparent_power_va=240.8, voltage_v=231.1, current_a=1.042, power_factor=0.61,
                     frequency_hz=50.0),
        "L3": Values(power_w=358.3, apparent_power_va=442.9, voltage_v=231.4, current_a=1.916, power_factor=0.84,
                     frequency_hz=50.0)}
    assert energy.total == Values(energy_import_wh=345628, energy_export_wh=1247)  # Wh, exact from the text
    assert energy.phases == {"L1": Values(energy_import_wh=115974, energy_export_wh=0),
                             "L2": Values(energy_import_wh=118810, energy_export_wh=0),
                             "L3": Values(energy_import_wh=110845, energy_export_wh=1247)}


def test_shelly_3em_gen1_gathers_a_round_of_topics_into_one_reading() -> None:
    cfg = config({"preset": "shelly_3em"})
    assert decode(captured("shelly_3em.txt"), cfg) == []  # the first round: is it complete? only its end tells
    first, second = decode(captured("shelly_3em.txt", times=2), cfg)  # ... when the next one begins
    assert first.model_dump(exclude={"ts", "received_at"}) == second.model_dump(exclude={"ts", "received_at"})
    assert first.meter_id == "mqtt_json:shellyem3-68C63AFAF952"
    assert first.phases == {"L1": Values(power_w=120.11, power_factor=0.71, current_a=0.71, voltage_v=239.03),
                            "L2": Values(power_w=116.23, power_factor=0.71, current_a=0.69, voltage_v=237.51),
                            "L3": Values(power_w=76.46, power_factor=0.54, current_a=0.59, voltage_v=240.5)}
    assert first.total == Values()  # Gen1 sends no total (the surplus sums the phases' power)
    # from the second round on, a round is complete with its last value: three rounds, three readings
    assert len(decode(captured("shelly_3em.txt", times=3), cfg)) == 3


def test_shelly_3em_gen1_energy_counters_in_exact_wh() -> None:
    first, second = decode(captured("shelly_3em_totals.txt", times=2), config({"preset": "shelly_3em"}))
    assert first.phases == second.phases == {"L1": Values(energy_import_wh=21831, energy_export_wh=53),
                                             "L2": Values(power_w=2.35)}


def test_tasmota_sml_common_names_any_group() -> None:
    messages = captured("tasmota_sml.txt")
    first, second, gateway = decode(messages[:3], config({"preset": "tasmota_sml"}))
    assert first.meter_id == second.meter_id == "mqtt_json:tasmota_sml"
    assert first.total == Values(power_w=-36.0, energy_import_wh=2687369, energy_export_wh=582457)  # kWh → Wh
    assert second.total == Values(power_w=-894.0, energy_import_wh=34507476, energy_export_wh=14737142)
    assert gateway.meter_id == "mqtt_json:gateway"
    assert gateway.total == Values(power_w=-136.39, energy_import_wh=2173500, energy_export_wh=349300)
    [mt681] = decode([("tele/mt681/SENSOR", b'{"Time":"2024-02-01T10:00:00","MT681":{"Total_in":12.5,"Power_cur":7}}')],
                     config({"preset": "tasmota_sml"}))  # the documented MT681 script's own name
    assert mt681.total == Values(power_w=7.0, energy_import_wh=12500)
    assert first.ts == AT  # Tasmota's `Time` has no zone: the receive time


def test_tasmota_sml_with_the_scripts_own_names() -> None:
    ehz = captured("tasmota_sml.txt")[3:]
    missing = "tele/ehz/SENSOR: no value at *.Power_curr|*.Power_cur (for power_w)"
    with pytest.raises(MissingField, match=re.escape(missing)):
        decode(ehz, config({"preset": "tasmota_sml"}))
    [reading] = decode(ehz, config({"preset": "tasmota_sml", "fields": {
        "power_w": "eHZ.Power2", "energy_import_wh": {"path": "eHZ.E_in", "scale": 1000},
        "energy_export_wh": {"path": "eHZ.E_out", "scale": 1000}}}))
    assert reading.total == Values(power_w=4111.0, energy_import_wh=67299845, energy_export_wh=50268783)


def test_opendtu() -> None:
    cfg = config({"preset": "opendtu"})
    reading, again = decode(captured("opendtu.txt", times=2), cfg)  # solar/ac/*, name, status/*: not subscribed
    assert again == reading  # the first round given out when the second began, the second at its end
    assert reading.meter_id == "mqtt_json:114172608275"
    assert reading.total == Values(power_w=-5.7, energy_export_wh=6283, voltage_v=236.4, current_a=0.02,
                                   frequency_hz=49.99, power_factor=1.001)
    assert reading.extra == {"yield_day_wh": 175.0, "temperature_c": 14.2, "dc1_power_w": 3.0, "dc2_power_w": 3.0}


def test_ahoydtu() -> None:
    reading, again = decode(captured("ahoydtu.txt", times=2), config({"preset": "ahoydtu"}))
    assert again == reading
    assert reading.meter_id == "mqtt_json:HM600"
    assert reading.total == Values(power_w=-71.0, energy_export_wh=465294, voltage_v=233.3, current_a=0.3,
                                   frequency_hz=49.99)
    assert reading.extra == {"yield_day_wh": 51.0, "temperature_c": 19.8, "dc1_power_w": 25.0}


def test_own_mapping_time_array_and_fixed_device() -> None:
    cfg = config({"topic": "home/meter", "device": "basement", "ts": "t", "ts_format": "unix_ms",
                  "fields": {"L2.voltage_v": "v.1", "extra.temperature_c": {"path": "temp", "optional": True}}},
                 {"topic": "iso/+", "ts": "when", "tz": "Europe/Berlin", "fields": {"power_w": "p"}})
    [reading] = decode([("home/meter", b'{"t": 1767225600500, "v": [229.9, 231.2]}')], cfg)
    assert reading.meter_id == "mqtt_json:basement"
    assert reading.ts == datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    assert reading.phases == {"L2": Values(voltage_v=231.2)} and reading.extra == {}
    [local] = decode([("iso/x1", b'{"when": "2026-07-01T12:00:00", "p": 5}')], cfg)
    assert local.ts == datetime(2026, 7, 1, 10, 0, tzinfo=UTC) and local.total.power_w == 5.0


@pytest.mark.parametrize(("topic", "payload", "error", "message"), [
    ("shellypro3em/status/em:0", b'{"id":0,"total_current":1.0}', MissingField, "no value at total_act_power"),
    ("shellypro3em/status/em:0", b'{"total_act_power":"high"}', UnknownField, "total_act_power is not a number"),
    ("shellypro3em/status/em:0", b"{not json", FrameError, "not JSON"),
    ("solar/1141/0/power", b"n/a", UnknownField, "0/power is not a number: 'n/a'"),
    ("other/topic", b"{}", UnknownField, "no mapping in the meters file for topic"),
])
def test_what_does_not_match_its_mapping(topic: str, payload: bytes, error: type[IngestError], message: str) -> None:
    cfg = config({"preset": "shelly_pro_3em"}, {"preset": "opendtu"})
    with pytest.raises(error, match=message):
        DRIVERS["mqtt_json"].decode(Received(payload, AT, "dev", topic), b"", cfg)


@pytest.mark.parametrize(("entry", "message"), [
    ('preset = "shelly_4em"', "no preset 'shelly_4em'"),
    ('topic = "a/+"\nfields = {"L4.power_w" = "p"}', "the scope must be one of"),
    ('topic = "a/+"\nfields = {"watts" = "p"}', "watts is not a Reading field"),
    ('topic = "a/b"\nvalues = {"power_w" = "power"}', "a/b: name the device by a `+` level of the topic"),
    ('topic = "a/+"', "either fields"),
])
def test_meters_file_mistakes_are_found_on_loading(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "meters.toml"
    path.write_text(f"[[mqtt_json]]\n{entry}\n")
    with pytest.raises(ValueError, match=re.escape(message)):
        MetersFile.load(path)


def test_scales_are_exact() -> None:
    [reading] = decode([("m/x", b'{"e": 1234.5675, "f": 0.3}')], config(
        {"topic": "m/+", "fields": {"energy_import_wh": {"path": "e", "scale": 1000}, "power_w": "f"}}))
    assert reading.total.energy_import_wh == 1234568  # 1234567.5 Wh, to the even; a float gives 1234567.4999...
    assert reading.total.power_w == float(Decimal("0.3"))


def test_fixed_device_and_levels() -> None:
    cfg = config({"topic": "home/+/meter", "device": "garage", "fields": {"power_w": "p"}},
                 {"topic": "a/b/+", "device": 1, "fields": {"power_w": "p"}})
    [fixed] = decode([("home/x/meter", b'{"p": 1}')], cfg)
    [level] = decode([("a/b/c", b'{"p": 1}')], cfg)
    assert (fixed.meter_id, level.meter_id) == ("mqtt_json:garage", "mqtt_json:b")


def test_state_of_other_mappings_and_of_an_older_meters_file() -> None:
    cfg = config({"topic": "a/+", "values": {"power_w": "p", "extra.t": "t"}},
                 {"topic": "b/+", "values": {"power_w": "p"}},
                 {"topic": "c/+/json", "fields": {"power_w": "p"}})
    stream = [("a/x/p", b"1"), ("b/x/p", b"5"), ("c/x/json", b'{"p": 9}'), ("a/x/t", b"20"), ("a/x/p", b"2"),
              ("b/x/p", b"6"), ("a/x/t", b"21")]
    readings = decode(stream, cfg)  # one device, x, in three mappings: each keeps its own round
    assert [(r.total.power_w, r.extra) for r in readings] == [
        (9.0, {}), (1.0, {"t": 20.0}), (5.0, {}), (6.0, {}), (2.0, {"t": 21.0})]
    stale = (b'{"a/+": {"at": "2026-05-01T09:00:00+00:00", '
             b'"values": {"extra.gone": "1", "power_w": "1"}, "known": ["extra.gone"]}}')
    older = DRIVERS["mqtt_json"].decode(Received(b"3", AT, "x", "a/x/p"), stale, cfg)
    assert [(r.total.power_w, r.extra) for r in older.readings] == [(1.0, {}), (3.0, {})]  # `gone`: left out


def test_not_finite_numbers_are_not_numbers() -> None:
    cfg = config({"preset": "shelly_3em"}, {"topic": "j/+", "fields": {"energy_import_wh": "e"}})
    for topic, payload in (("shellies/s/emeter/0/total", b"NaN"), ("shellies/s/emeter/0/total", b"-Infinity"),
                           ("j/x", b'{"e": "sNaN"}'), ("j/x", b'{"e": "Infinity"}')):
        with pytest.raises(UnknownField, match="is not a number"):
            DRIVERS["mqtt_json"].decode(Received(payload, AT, "s", topic), b"", cfg)


def test_a_topic_taken_already_or_a_bad_zone_is_a_meters_file_mistake(tmp_path: Path) -> None:
    path = tmp_path / "meters.toml"
    for entry, message in (('topic = "dsmr/+"\nfields = {power_w = "p"}', "the topic dsmr/+ is dsmr's already"),
                           ('topic = "a/+"\ntz = "Mars/Olympus"\nfields = {power_w = "p"}', "no time zone"),
                           ('topic = "a/+"\ndevice = 4\nfields = {power_w = "p"}', "a/+: has no level 4")):
        path.write_text(f"[[mqtt_json]]\n{entry}\n")
        with pytest.raises(ValueError, match=re.escape(message)):
            MetersFile.load(path)


FUZZ = config({"preset": "shelly_pro_3em"}, {"preset": "opendtu"}, {"preset": "tasmota_sml"})
TOPICS = ["shellypro3em/status/em:0", "solar/1141/0/power", "solar/1141/0/yieldtotal", "tele/x/SENSOR"]
NUMBERS = st.decimals(allow_nan=True, allow_infinity=True).map(lambda d: str(d).encode())


@given(st.lists(st.tuples(st.sampled_from(TOPICS), st.one_of(st.binary(max_size=300), NUMBERS)), max_size=12))
def test_arbitrary_messages_in_any_order_only_ingest_errors(messages: list[tuple[str, bytes]]) -> None:
    """With the device's state carried from message to message, as the worker does (after a dead letter too)."""
    state = b""
    for topic, payload in messages:
        try:
            state = DRIVERS["mqtt_json"].decode(Received(payload, AT, "dev", topic), state, FUZZ).state
        except IngestError:
            pass


def test_a_number_too_large_for_a_meter_is_refused_before_any_arithmetic() -> None:
    cfg = config({"topic": "j/+", "fields": {"energy_import_wh": {"path": "e", "scale": 1000}}},
                 {"topic": "v/+", "values": {"energy_import_wh": "e"}})
    for topic, payload in (("j/x", b'{"e": 1e400}'), ("j/x", b'{"e": "1e999990"}'), ("v/x/e", b"1e999990")):
        with pytest.raises(UnknownField, match="is out of range"):
            DRIVERS["mqtt_json"].decode(Received(payload, AT, "x", topic), b"", cfg)
    [reading] = decode([("j/x", b'{"e": 999999999999999}')], cfg)
    assert reading.total.energy_import_wh == 999_999_999_999_999_000


def test_mappings_that_would_trip_the_bridge_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "meters.toml"
    for entries, message in (
            ('topic = "a/#"\ndevice = 1\nfields = {power_w = "p"}', "a/#: has no level 1 every topic has"),
            ('topic = "a/+"\ndevice = ""\nfields = {power_w = "p"}', "`device` is empty"),
            ('preset = "opendtu"\n\n[[mqtt_json]]\ntopic = "solar/+"\nvalues = {"extra.x" = "0/efficiency"}',
             "one value per topic under solar/+ in two entries")):
        path.write_text(f"[[mqtt_json]]\n{entries}\n")
        with pytest.raises(ValueError, match=re.escape(message)):
            MetersFile.load(path)
    path.write_text('[[mqtt_json]]\npreset = "opendtu"\nvalues = {"extra.efficiency_pct" = "0/efficiency"}\n')
    assert "solar/+/0/efficiency" in routes(MetersFile.load(path).driver_config())


def test_a_device_state_keeps_only_the_mappings_there_are() -> None:
    cfg = config({"topic": "a/+", "values": {"power_w": "p"}})
    stale = b'{"gone/+": {"at": "2026-05-01T09:00:00+00:00", "values": {"power_w": "7"}, "known": []}}'
    decoded = DRIVERS["mqtt_json"].decode(Received(b"1", AT, "x", "a/x/p"), stale, cfg)
    assert list(json.loads(decoded.state)) == ["a/+"]
