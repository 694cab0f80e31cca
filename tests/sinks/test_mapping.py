"""Reading → InfluxDB line protocol and → kei-format file lines (pure mappings)."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pipeline.models import Average, Reading, Stats, SurplusSignal, Values
from pipeline.sinks import Debounced, files, influx

READING = Reading(
    meter_id="iammeter:5DB50BF4", driver="iammeter",
    ts=datetime(2025, 6, 1, 10, 0, 5, 120000, tzinfo=UTC), received_at=datetime(2025, 6, 1, 10, 0, 6, tzinfo=UTC),
    total=Values(power_w=593.0, energy_import_wh=1274549),
    phases={"L1": Values(voltage_v=226.2, power_w=197.0), "L2": Values()},
    extra={"temperature_c": 21.25},
)


def test_lines_one_per_scope_with_tags_types_and_event_time() -> None:
    lines = influx.reading_lines(READING)
    assert lines == [
        "readings,driver=iammeter,meter=iammeter:5DB50BF4,phase=total "
        "energy_import_wh=1274549i,power_w=593,temperature_c=21.25 1748772005120000",
        "readings,driver=iammeter,meter=iammeter:5DB50BF4,phase=L1 power_w=197,voltage_v=226.2 1748772005120000",
    ]  # L2 has no values: no point


def test_lines_are_idempotent() -> None:
    first = influx.reading_lines(READING)
    again = influx.reading_lines(Reading.from_json(READING.to_json()))
    assert first == again


def test_tag_values_are_escaped() -> None:
    odd = READING.model_copy(update={"meter_id": "lines:unit 1,a=b"})
    line = influx.reading_lines(odd)[0]
    assert r"meter=lines:unit\ 1\,a\=b" in line


def test_file_lines_in_kei_format_local_time() -> None:
    lines = [line for _, line in files.reading_lines(READING, ZoneInfo("Europe/Vienna"))]
    assert lines == [
        "2025/06/01 12:00:05,iammeter:5DB50BF4,power_w,593.0,iammeter",
        "2025/06/01 12:00:05,iammeter:5DB50BF4,energy_import_wh,1274549,iammeter",
        "2025/06/01 12:00:05,iammeter:5DB50BF4,L1.voltage_v,226.2,iammeter",
        "2025/06/01 12:00:05,iammeter:5DB50BF4,L1.power_w,197.0,iammeter",
        "2025/06/01 12:00:05,iammeter:5DB50BF4,temperature_c,21.25,iammeter",
    ]


AVERAGE = Average(
    meter_id="iammeter:5DB50BF4", driver="iammeter", start=datetime(2025, 6, 1, 10, 0, tzinfo=UTC),
    end=datetime(2025, 6, 1, 10, 10, tzinfo=UTC), count=3,
    total={"power_w": Stats(mean=500.5, min=400.0, max=650.0, count=3),
           "energy_import_wh": Stats(mean=1000001.0, min=1000000, max=1000002, count=3, delta=2)},
    phases={"L1": {"voltage_v": Stats(mean=230.1, min=229.0, max=231.0, count=3)}},
    extra={"temperature_c": Stats(mean=21.5, min=21.0, max=22.0, count=2)},
)


def test_average_lines_and_sum_lines() -> None:
    lines = influx.lines(AVERAGE)
    assert lines[0].startswith("averages_10m,driver=iammeter,meter=iammeter:5DB50BF4,phase=total ")
    assert "energy_import_wh_delta=2i" in lines[0] and "power_w_mean=500.5" in lines[0]
    assert "power_w_count=3i" in lines[0] and "temperature_c_max=22" in lines[0]
    assert lines[0].endswith(" 1748772000000000")  # the window's start
    assert lines[1].startswith("averages_10m,driver=iammeter,meter=iammeter:5DB50BF4,phase=L1 voltage_v_count=3i")
    assert [line for _, line in files.average_lines(AVERAGE, ZoneInfo("Europe/Vienna"))] == [
        "2025/06/01 12:00,iammeter:5DB50BF4,power_w,500.5",
        "2025/06/01 12:00,iammeter:5DB50BF4,energy_import_wh_delta,2",
        "2025/06/01 12:00,iammeter:5DB50BF4,L1.voltage_v,230.1",
        "2025/06/01 12:00,iammeter:5DB50BF4,temperature_c,21.5",
    ]


def test_debounced_and_surplus_lines() -> None:
    debounced = influx.lines(Debounced(READING))[0]
    assert debounced.startswith("readings_5m,driver=iammeter,meter=iammeter:5DB50BF4,phase=total ")
    signal = SurplusSignal(site="home", ts=READING.ts, grid_w=-2000.0, pv_w=None, charger_w=0.0, surplus_w=2000.0,
                           charge=True, phases=1, current_a=8.0, power_w=1840.0, reason="start: it is sunny")
    [line] = influx.lines(signal)
    assert line == ('surplus,site=home charger_w=0,charging=1i,current_a=8,grid_w=-2000,phases=1i,'
                    'power_w=1840,reason="start: it is sunny",surplus_w=2000 1748772005120000')  # floats: no `i`
