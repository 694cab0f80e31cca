"""Reading → InfluxDB points and → kei-format file lines (pure mappings)."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pipeline.models import Reading, Values
from pipeline.sinks.files import reading_lines
from pipeline.sinks.influx import reading_points

READING = Reading(
    meter_id="iammeter:5DB50BF4", driver="iammeter",
    ts=datetime(2025, 6, 1, 10, 0, 5, 120000, tzinfo=UTC), received_at=datetime(2025, 6, 1, 10, 0, 6, tzinfo=UTC),
    total=Values(power_w=593.0, energy_import_wh=1274549),
    phases={"L1": Values(voltage_v=226.2, power_w=197.0), "L2": Values()},
    extra={"temperature_c": 21.25},
)


def test_points_one_per_scope_with_tags_types_and_event_time() -> None:
    lines = [p.to_line_protocol() for p in reading_points(READING)]
    assert lines == [
        "readings,driver=iammeter,meter=iammeter:5DB50BF4,phase=total "
        "energy_import_wh=1274549i,power_w=593,temperature_c=21.25 1748772005120000",
        "readings,driver=iammeter,meter=iammeter:5DB50BF4,phase=L1 power_w=197,voltage_v=226.2 1748772005120000",
    ]  # L2 has no values: no point


def test_points_are_idempotent() -> None:
    first = [p.to_line_protocol() for p in reading_points(READING)]
    again = [p.to_line_protocol() for p in reading_points(Reading.from_json(READING.to_json()))]
    assert first == again


def test_tag_values_are_escaped() -> None:
    odd = READING.model_copy(update={"meter_id": "lines:unit 1,a=b"})
    line = reading_points(odd)[0].to_line_protocol()
    assert r"meter=lines:unit\ 1\,a\=b" in line


def test_file_lines_in_kei_format_local_time() -> None:
    lines = [line for _, line in reading_lines(READING, ZoneInfo("Europe/Vienna"))]
    assert lines == [
        "2025/06/01 12:00:05,iammeter:5DB50BF4,power_w,593.0,iammeter",
        "2025/06/01 12:00:05,iammeter:5DB50BF4,energy_import_wh,1274549,iammeter",
        "2025/06/01 12:00:05,iammeter:5DB50BF4,L1.voltage_v,226.2,iammeter",
        "2025/06/01 12:00:05,iammeter:5DB50BF4,L1.power_w,197.0,iammeter",
        "2025/06/01 12:00:05,iammeter:5DB50BF4,temperature_c,21.25,iammeter",
    ]
