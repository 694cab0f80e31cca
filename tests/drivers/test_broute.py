"""ECHONET Lite (B-route) frames and the D3/E1 scaling state."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.drivers.broute import FrameResult, Scaling, decode, parse_frame
from pipeline.errors import FrameError, IngestError, UnknownField
from tests.frames import vectors

AT = datetime(2025, 6, 1, 10, 0, 0, tzinfo=UTC)
V = vectors("broute")
EDT = V["el-yakumo-edt-unit-tests"]["input"]


def response(*properties: tuple[int, str], esv: int = 0x72) -> bytes:
    body = b"".join(bytes([epc, len(bytes.fromhex(edt))]) + bytes.fromhex(edt) for epc, edt in properties)
    return bytes.fromhex("1081000102880105FF01") + bytes([esv, len(properties)]) + body


UNKNOWN = Scaling()


def run(frame: bytes, scaling: Scaling = UNKNOWN) -> FrameResult:
    return decode(frame, received_at=AT, device_id="M1", scaling=scaling)


def test_keilog_e7_is_1189_w() -> None:
    decoded = run(bytes.fromhex(V["el-keilog-e7-1189W"]["input"]))
    [reading] = decoded.readings
    assert (reading.meter_id, reading.ts, reading.total.power_w) == ("broute:M1", AT, 1189.0)


def test_d3_coefficient_is_state_not_a_reading() -> None:
    decoded = run(bytes.fromhex(V["el-yakumo-d3-coefficient"]["input"]))
    assert decoded.readings == [] and decoded.scaling == Scaling(coefficient=1)


def test_requests_and_node_profile_notices_give_nothing() -> None:
    request = parse_frame(bytes.fromhex(V["el-gosmartmeter-get-request"]["input"]))
    assert (request.esv, [epc for epc, _ in request.properties]) == (0x62, [0xE7, 0xE8])
    assert run(bytes.fromhex(V["el-gosmartmeter-get-request"]["input"])).readings == []
    d5 = "10812EDA0EF0010EF0017301D50401028801"  # ak1211: instance list after join
    assert run(bytes.fromhex(d5)).readings == []


@pytest.mark.parametrize(("coefficient", "unit", "wh"), [
    # yakumo's test reads D3 00010000 as 10000; the EDT is a binary uint32 (ECHONET Appendix), i.e. 65536:
    # 1 x 65536 x 0.0001 kWh = 6.5536 kWh → 6554 Wh (half-even). Their E1 04 = 0.0001 kWh agrees.
    (EDT["D3"], EDT["E1"], 6554),
    ("00000001", "00", 1000), ("00000002", "00", 2000), ("00000001", "04", 0), ("00000001", "01", 100),
    ("00000001", "0D", 10_000_000),
])
def test_e0_is_raw_times_coefficient_times_unit(coefficient: str, unit: str, wh: int) -> None:
    decoded = run(response((0xD3, coefficient), (0xE1, unit), (0xE0, EDT["E0"])))  # in one frame, any order
    assert decoded.readings[0].total.energy_import_wh == wh


def test_energy_waits_for_scaling_and_state_carries_over() -> None:
    first = run(response((0xE0, "00000064"), (0xE3, "0000000A")))
    assert first.readings == [] and first.unscaled == 2
    state = run(response((0xD3, "00000001"))).scaling
    state = run(response((0xE1, "01")), state).scaling
    [reading] = run(response((0xE0, "00000064"), (0xE3, "0000000A")), state).readings
    assert (reading.total.energy_import_wh, reading.total.energy_export_wh) == (10000, 1000)


def test_d3_not_available_means_coefficient_one() -> None:
    assert run(response((0xD3, ""), esv=0x52)).scaling.coefficient == 1


def test_power_extremes_sentinels_and_currents() -> None:
    assert run(response((0xE7, EDT["E7_max"]))).readings[0].total.power_w == 2147483645
    assert run(response((0xE7, EDT["E7_negative"]))).readings[0].total.power_w == -2147483647
    assert run(response((0xE7, "FFFFFCB8"))).readings[0].total.power_w == -840
    assert run(response((0xE7, "80000000"))).readings == []  # sentinel: no measurement
    [reading] = run(response((0xE8, EDT["E8"]))).readings
    assert (reading.phases["L1"].current_a, reading.phases["L2"].current_a) == (1.8, 5.2)
    [single] = run(response((0xE8, "00127FFE"))).readings  # T: no data on a 2-wire service
    assert single.phases["L1"].current_a == 1.8 and "L2" not in single.phases


def test_fixed_time_energy_has_its_own_timestamp() -> None:
    scaling = Scaling(coefficient=1, unit=1)
    ea = "07E90601091E0000000064"  # 2025-06-01 09:30:00 JST, 100 x 0.1 kWh
    [reading] = run(response((0xEA, ea)), scaling).readings
    assert reading.ts == datetime(2025, 6, 1, 0, 30, tzinfo=UTC) and reading.total.energy_import_wh == 10000


@pytest.mark.parametrize(("frame", "error"), [
    (response((0xE1, EDT["E1_invalid_len"])), UnknownField),
    (response((0xE1, EDT["E1_invalid_value"])), UnknownField),
    (response((0xE7, "0001")), UnknownField),
    (bytes.fromhex("1081000102880105FF017201E704000004"), FrameError),
    (bytes.fromhex("1081000102880105FF017201E704000004A5FF"), FrameError),
    (bytes.fromhex("1082000102880105FF017201E704000004A5"), FrameError),
])
def test_bad_frames(frame: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        run(frame)


@given(st.binary(max_size=80))
def test_arbitrary_bytes_raise_only_ingest_errors(frame: bytes) -> None:
    try:
        run(bytes.fromhex("1081") + frame)
    except IngestError:
        pass


def test_get_request_matches_go_smartmeter() -> None:
    from pipeline.drivers.broute import get_request

    assert get_request(0, (0xE7, 0xE8)).hex().upper() == V["el-gosmartmeter-get-request"]["input"]
