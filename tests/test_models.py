"""The public JSON of `Reading` (docs/architecture.md)."""

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from pipeline.models import Reading, Values


def reading(**overrides: object) -> Reading:
    fields: dict[str, object] = {
        "meter_id": "iammeter:CB0A0CFB", "driver": "iammeter",
        "ts": datetime(2025, 6, 1, 10, 0, 5, tzinfo=UTC),
        "received_at": datetime(2025, 6, 1, 10, 0, 5, 120000, tzinfo=UTC),
        "total": Values(power_w=579.0, energy_import_wh=908690, energy_export_wh=0, frequency_hz=49.99),
        "phases": {"L1": Values(voltage_v=225.9, current_a=1.26, power_w=194.0, reactive_power_var=-111.0)},
    }
    return Reading(**{**fields, **overrides})  # type: ignore[arg-type]


def test_wire_format_omits_unknown_values_and_uses_utc_z() -> None:
    wire = json.loads(reading().to_json())
    assert wire == {
        "meter_id": "iammeter:CB0A0CFB", "driver": "iammeter",
        "ts": "2025-06-01T10:00:05Z", "received_at": "2025-06-01T10:00:05.120Z",
        "total": {"power_w": 579.0, "energy_import_wh": 908690, "energy_export_wh": 0, "frequency_hz": 49.99},
        "phases": {"L1": {"voltage_v": 225.9, "current_a": 1.26, "power_w": 194.0, "reactive_power_var": -111.0}},
        "extra": {},
    }


def test_round_trip() -> None:
    original = reading(extra={"temperature_c": 21.5})
    assert Reading.from_json(original.to_json()) == original


def test_timestamps_are_converted_to_utc() -> None:
    vienna_summer = timezone(timedelta(hours=2))
    r = reading(ts=datetime(2025, 6, 1, 12, 0, 5, tzinfo=vienna_summer))
    assert r.ts == datetime(2025, 6, 1, 10, 0, 5, tzinfo=UTC)
    assert r.ts.utcoffset() == timedelta(0)
    assert json.loads(r.to_json())["ts"] == "2025-06-01T10:00:05Z"


def test_naive_timestamps_and_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        reading(ts=datetime(2025, 6, 1, 10, 0, 5))
    with pytest.raises(ValidationError):
        Values(power_kw=1.0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        reading(phases={"L4": Values()})


def test_energy_stays_an_exact_integer() -> None:
    with pytest.raises(ValidationError):
        Values(energy_import_wh=1.5)  # type: ignore[arg-type]
    assert Reading.from_json(reading().to_json()).total.energy_import_wh == 908690


def test_build_turns_invalid_values_into_frame_errors() -> None:
    from pipeline.errors import FrameError

    with pytest.raises(FrameError, match=r"lines: no valid Reading \(ts:"):
        Reading.build({"meter_id": "lines:x", "driver": "lines", "ts": datetime(2025, 1, 1),
                       "received_at": datetime(2025, 1, 1, tzinfo=UTC)})
