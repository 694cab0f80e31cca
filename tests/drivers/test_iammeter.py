"""IAMMETER decoder against every captured payload, field by field, and against bad input."""

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.drivers.iammeter import decode
from pipeline.errors import FrameError, IngestError
from pipeline.models import Values
from tests.frames import vectors

AT = datetime(2025, 6, 1, 10, 0, 5, 120000, tzinfo=UTC)
V = vectors("iammeter")


def payload(vector_id: str) -> bytes:
    return V[vector_id]["input"].encode()


def kwh(value: float) -> int:
    """Independent kWh → Wh for the vectors' stated values."""
    return int(Decimal(str(value)) * 1000)


def expected_row(stated: dict[str, float]) -> Values:
    return Values(
        voltage_v=stated["voltage_V"], current_a=stated["current_A"], power_w=stated["active_power_W"],
        energy_import_wh=kwh(stated["import_energy_kWh"]), energy_export_wh=kwh(stated["export_energy_kWh"]),
        frequency_hz=stated["frequency_Hz"], power_factor=stated["power_factor"],
    )


def test_single_phase_every_field() -> None:
    [reading] = decode(payload("iammeter-doc-single-phase"), received_at=AT)
    assert reading.meter_id == "iammeter:DA2BED94"
    assert reading.driver == "iammeter"
    assert reading.ts == AT and reading.received_at == AT  # no meter clock
    assert reading.total == Values(voltage_v=226.85, current_a=1.31, power_w=152.0, energy_import_wh=22920380,
                                   energy_export_wh=0, frequency_hz=49.97, power_factor=0.51)
    assert reading.total == expected_row(V["iammeter-doc-single-phase"]["expected"]["derived_by_us"])
    assert reading.phases == {}


def test_three_phase_rows_are_phases_and_total_is_their_sum() -> None:
    [reading] = decode(payload("iammeter-doc-three-phase"), received_at=AT)
    derived = V["iammeter-doc-three-phase"]["expected"]["derived_by_us"]
    assert reading.meter_id == "iammeter:5DB50BF4"
    for phase, key in (("L1", "phase_A"), ("L2", "phase_B"), ("L3", "phase_C")):
        assert reading.phases[phase] == expected_row(derived[key])
    assert reading.phases["L3"].energy_import_wh == 427346
    assert reading.total == Values(power_w=593.0, energy_import_wh=423676 + 423527 + 427346,
                                   energy_export_wh=0, frequency_hz=50.03)


def test_three_phase_nem_row_is_the_total() -> None:
    [reading] = decode(payload("iammeter-doc-three-phase-nem"), received_at=AT, device_id="5DB50BF4")
    derived = V["iammeter-doc-three-phase-nem"]["expected"]["derived_by_us"]
    assert reading.meter_id == "iammeter:5DB50BF4"  # no SN in the fragment: the bridge's device id
    assert reading.phases["L2"] == expected_row(derived["phase_B"])
    # the net row's voltage is a reference and its current is not meaningful: left out
    assert reading.total == Values(power_w=594.0, energy_import_wh=1275075, energy_export_wh=0,
                                   frequency_hz=50.0, power_factor=0.62)
    assert reading.total.energy_import_wh != sum(p.energy_import_wh or 0 for p in reading.phases.values())


def test_data_spelling_with_three_rows_is_three_phase() -> None:
    body = json.loads(payload("iammeter-doc-three-phase"))
    body["Data"] = body.pop("Datas")
    [reading] = decode(json.dumps(body).encode(), received_at=AT)
    assert reading.phases["L1"].voltage_v == 226.2
    assert set(reading.phases) == {"L1", "L2", "L3"}


def test_reactive_block_per_phase() -> None:
    body = json.loads(payload("iammeter-doc-three-phase"))
    body.update(json.loads(payload("iammeter-doc-reactive-EA")))
    [reading] = decode(json.dumps(body).encode(), received_at=AT)
    assert reading.phases["L1"].reactive_power_var == -119.0
    assert reading.phases["L1"].reactive_energy_import_varh == 0
    assert reading.phases["L1"].reactive_energy_export_varh == 258703
    assert reading.phases["L3"].reactive_energy_import_varh == 7
    assert reading.phases["L3"].reactive_energy_export_varh == 256485
    assert reading.total.reactive_power_var == -357.0
    assert reading.total.reactive_energy_export_varh == 258703 + 260278 + 256485


def test_mqtt_format_with_nem_row_and_tabs() -> None:
    [reading] = decode(payload("iammeter-iammeterjs-mqtt-format"), received_at=AT)
    rows = V["iammeter-iammeterjs-mqtt-format"]["expected"]["derived_by_us"]["rows"]
    assert reading.meter_id == "iammeter:29C9F55D"
    assert reading.phases["L2"] == expected_row(rows[1])
    assert reading.total.power_w == 3.2
    assert reading.total.energy_import_wh == 26329
    assert reading.total.energy_export_wh == 25834


def test_legacy_lowercase_data() -> None:
    [reading] = decode(payload("iammeter-legacy-wem3162-monitorjson"), received_at=AT, device_id="wem3162")
    assert reading.meter_id == "iammeter:wem3162"
    assert reading.total == Values(voltage_v=235.0, current_a=1.214, power_w=189.0,
                                   energy_import_wh=1265170, energy_export_wh=0)


def test_payload_sn_wins_over_the_topic_device_id() -> None:
    [reading] = decode(payload("iammeter-doc-single-phase"), received_at=AT, device_id="OTHER")
    assert reading.meter_id == "iammeter:DA2BED94"


def test_energy_is_exact_in_wh() -> None:
    body = b'{"SN":"X","Data":[230,1,100,0.1,0.2,50,1]}'
    [reading] = decode(body, received_at=AT)
    assert reading.total.energy_import_wh == 100 and reading.total.energy_export_wh == 200
    assert isinstance(reading.total.energy_import_wh, int)


def exact_wh(text: str) -> int:
    return int((Decimal(text) * 1000).to_integral_value())


# Where rounding the float would be wrong: a half Wh the float puts on the other side, and kWh beyond
# a float's integer precision in Wh.
@pytest.mark.parametrize("text", ["256.5635", "517.7755", "9617641389175.675", "9970089853153.677", "207.491"])
@pytest.mark.parametrize("form", ["{}", "{}0", "{}e0"])
def test_energy_from_the_fast_float_parse_is_the_exact_decimal(text: str, form: str) -> None:
    """Energies are parsed as floats first; the Wh must be what decimal arithmetic gives (half-even)."""
    body = f'{{"SN":"X","Data":[230,1,100,{form.format(text)},0,50,1]}}'.encode()
    [reading] = decode(body, received_at=AT)
    assert reading.total.energy_import_wh == exact_wh(text)


@given(st.decimals(min_value=0, max_value=10**13, places=5, allow_nan=False, allow_infinity=False))
def test_any_energy_is_the_exact_decimal(kwh_value: Decimal) -> None:
    body = f'{{"SN":"X","Data":[230,1,100,{kwh_value},0,50,1]}}'.encode()
    [reading] = decode(body, received_at=AT)
    assert reading.total.energy_import_wh == exact_wh(str(kwh_value))


@pytest.mark.parametrize(("body", "message"), [
    (b"", "not JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[1,2]", "not a JSON object"),
    (b'{"SN":"X"}', "no 'Data', 'Datas' or 'data'"),
    (b'{"Data":[1,2,3,4,5,6,7]}', "no SN"),
    (b'{"SN":"X","Data":[1,2,3]}', "must be a list of 7 numbers: [1, 2, 3]"),
    (b'{"SN":"X","Data":[1,2,"3",4,5,6,7]}', "Data[2] is not a number: '3'"),
    (b'{"SN":"X","Data":[1,2,true,4,5,6,7]}', "Data[2] is not a number: True"),
    (b'{"SN":"X","Data":[1,2,NaN,4,5,6,7]}', "non-finite number NaN"),
    (b'{"SN":"X","Datas":[[1,2,3,4,5,6,7],[1,2,3,4,5,6,7]]}', "must have 3 phase rows"),
    (b'{"SN":"X","Data":[1,2,3,4,5,6,7],"EA":[]}', "'EA' must be an object"),
    (b'{"SN":"X","Data":[1,2,1e400,4,5,6,7]}', "value out of range"),
    (b'{"SN":"X","Data":[1,2,' + b"9" * 400 + b',4,5,6,7]}', "value out of range"),  # an integer beyond floats
    (b'{"SN":"X","Data":[1,2,3,1e17,5,6,7]}', "energy out of range"),
    (b'{"SN":"X","Data":[1,2,3,1e400,5,6,7]}', "energy out of range"),  # inf after the fast float parse
])
def test_bad_payloads_raise_frame_errors_naming_the_value(body: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=None) as info:
        decode(body, received_at=AT)
    assert message in str(info.value)
    assert info.value.stage == "frame"


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_ingest_errors(body: bytes) -> None:
    try:
        decode(body, received_at=AT, device_id="X")
    except IngestError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=8) | st.dictionaries(
        st.sampled_from(["SN", "Data", "Datas", "data", "EA", "Reactive", "x"]), children, max_size=4),
    max_leaves=40,
)


@given(json_values)
def test_arbitrary_json_raises_only_ingest_errors(value: object) -> None:
    try:
        decode(json.dumps(value).encode(), received_at=AT, device_id="X")
    except IngestError:
        pass
