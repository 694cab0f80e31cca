"""Acrel ADW300/ADW310 decoder against the official sample, field by field, and against bad input."""

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.drivers.adw300 import decode
from pipeline.errors import FrameError, IngestError
from pipeline.models import Values
from tests.frames import vectors

AT = datetime(2025, 6, 1, 10, 0, 5, tzinfo=UTC)
V = vectors("adw300")
PART1 = V["acrel-adw3xx-official-sample-part1"]
PART2 = V["acrel-adw3xx-official-sample-part2"]


def message(points: dict[int, object], tp: int = 1631839905057) -> bytes:
    return json.dumps({"data": [{"tp": tp, "point": [{"id": i, "val": v} for i, v in points.items()]}]}).encode()


def test_part1_every_field() -> None:
    [reading] = decode(PART1["expected"]["normalized_json_used_for_derivation"].encode(), received_at=AT)
    assert reading.meter_id == "adw300:20201998111433"
    assert reading.ts == datetime(2021, 9, 17, 0, 51, 45, 57000, tzinfo=UTC)  # tp, the meter's clock
    assert reading.received_at == AT
    assert reading.total == Values(power_w=0.0, reactive_power_var=0.0, apparent_power_va=0.0, power_factor=1.0,
                                   frequency_hz=0.0, energy_import_wh=45300, energy_export_wh=11320,
                                   reactive_energy_import_varh=6540, reactive_energy_export_varh=990)
    zero = Values(voltage_v=0.0, current_a=0.0, power_w=0.0, reactive_power_var=0.0, apparent_power_va=0.0,
                  power_factor=1.0)
    assert reading.phases == {"L1": zero, "L2": zero, "L3": zero}
    assert reading.extra == {"voltage_l1_l2_v": 0.0, "voltage_l2_l3_v": 0.0, "voltage_l3_l1_v": 0.0,
                             "signal_strength": 25.0, "active_demand_w": 0.0, "pt_ratio": 1.0, "ct_ratio": 1.0}


def test_part2_phase_energies_and_extras() -> None:
    [reading] = decode(PART2["input"].encode(), received_at=AT)
    assert reading.ts == datetime(2021, 9, 17, 0, 51, 48, 276000, tzinfo=UTC)
    assert reading.total == Values()
    assert reading.phases["L1"] == Values(energy_import_wh=14930, energy_export_wh=3760,
                                          reactive_energy_import_varh=2160, reactive_energy_export_varh=630)
    assert reading.phases["L2"].energy_import_wh == 15200
    assert reading.phases["L3"].reactive_energy_export_varh == 140
    assert reading.extra["temperature_n_c"] == 0.0
    assert reading.extra["reactive_energy_q2_varh"] == 6530 and reading.extra["reactive_energy_q4_varh"] == 990
    assert reading.extra["energy_import_valley_wh"] == 0
    assert len(reading.extra) == 37 - 12  # ids 36-72 minus the 12 per-phase energies


def test_the_pdf_sample_as_printed_is_a_frame_error() -> None:
    with pytest.raises(FrameError, match="not JSON"):
        decode(PART1["input"].encode(), received_at=AT)


def test_units_are_si_and_strings_are_numbers() -> None:
    [reading] = decode(message({0: "D1", 1: "231.5", 2: 229.9, 3: 230.1, 10: "1.234", 13: 3.5, 18: 0.9,
                                28: "12345.678", 26: "50.01"}), received_at=AT)
    assert reading.phases["L1"].voltage_v == 231.5 and reading.phases["L1"].power_w == 1234.0
    assert reading.phases["L1"].apparent_power_va == 900.0
    assert reading.total.power_w == 3500.0 and reading.total.frequency_hz == 50.01
    assert reading.total.energy_import_wh == 12345678


def test_single_phase_adw310_fills_total_only() -> None:
    [reading] = decode(message({0: "ADW310X", 1: 230.2, 7: 4.5, 10: 1.01, 22: 0.98, 26: 50.0, 28: 7.5}),
                       received_at=AT)
    assert reading.phases == {}
    assert reading.total == Values(voltage_v=230.2, current_a=4.5, power_w=1010.0, power_factor=0.98,
                                   frequency_hz=50.0, energy_import_wh=7500)


def test_unknown_ids_are_kept_and_iccid_ignored() -> None:
    [reading] = decode(message({0: "D1", 33: "898604510919C0479914", 99: 7}), received_at=AT)
    assert reading.extra == {"acrel_id_99": 7.0}


@pytest.mark.parametrize(("body", "text"), [
    (b"{}", "no 'data' list"),
    (b'{"data":[{"tp":1}]}', "no 'point' list"),
    (b'{"data":[{"tp":"x","point":[]}]}', "not a millisecond timestamp"),
    (message({1: 230}), "no device id"),
    (message({0: "D", 1: "abc"}), "id 1 value is not a number: 'abc'"),
    (message({0: "D", 1: True}), "id 1 value is not a number: True"),
    (message({0: "D", 28: "1e400"}), "id 28 value out of range"),
    (b'{"data":[{"tp":1,"point":[{"val":1}]}]}', "point is not"),
])
def test_bad_messages(body: bytes, text: str) -> None:
    with pytest.raises(FrameError) as info:
        decode(body, received_at=AT)
    assert text in str(info.value)


def test_device_id_from_the_bridge_when_the_message_lacks_id_0() -> None:
    [reading] = decode(message({1: 230}), received_at=AT, device_id="from-topic")
    assert reading.meter_id == "adw300:from-topic"


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_ingest_errors(body: bytes) -> None:
    try:
        decode(body, received_at=AT)
    except IngestError:
        pass


scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6)


@given(st.lists(st.fixed_dictionaries({"id": st.integers(-2, 80) | scalars, "val": scalars}), max_size=10),
       st.integers(-5, 10**15) | scalars)
def test_arbitrary_points_raise_only_ingest_errors(points: list[dict[str, object]], tp: object) -> None:
    try:
        decode(json.dumps({"data": [{"tp": tp, "point": points}]}).encode(), received_at=AT, device_id="X")
    except IngestError:
        pass
