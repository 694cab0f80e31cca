"""The plausibility check on what it was not written against: every captured vector of real meters passes,
and Hypothesis for "never raises, the state stays JSON" and "a slowly rising register always passes"."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.drivers import adw300, broute, evn, iammeter
from pipeline.errors import IngestError
from pipeline.logic.plausible import Limits, Plausibility, check
from pipeline.models import Reading, Values
from tests.frames import vectors

T0 = datetime(2025, 6, 1, 10, 0, 0, tzinfo=UTC)


# --- captured vectors: real data passes -----------------------------------------------------------------

def captured_readings() -> list[Reading]:
    """Every reading the drivers decode from tests/frames/{iammeter,adw300,evn}/vectors.json (the captured
    payloads and frames; each directory's README.md says where they come from)."""
    out: list[Reading] = []
    decoders = {"iammeter": iammeter.decode, "adw300": adw300.decode, "evn": evn.decode}
    for driver in ("iammeter", "adw300", "evn"):
        for entry in vectors(driver).values():
            expected = entry["expected"] if isinstance(entry["expected"], dict) else {}
            key = {"keys": {evn.ANY_METER: bytes.fromhex(entry["key"])}} if isinstance(entry["key"], str) else {}
            for payload in (entry["input"], expected.get("normalized_json_used_for_derivation")):
                if isinstance(payload, str):
                    try:
                        out += decoders[driver](payload.encode(), received_at=T0, device_id=entry["id"], **key)
                    except IngestError:
                        pass  # framing-only vectors, no key, the PDF's unparsable print: other tests cover them
    edt = vectors("broute")["el-yakumo-edt-unit-tests"]["input"]
    properties = [(0xD3, edt["D3"]), (0xE1, edt["E1"]), (0xE0, edt["E0"]), (0xE8, edt["E8"]),
                  (0xE7, vectors("broute")["el-keilog-e7-1189W"]["input"][-8:])]
    body = b"".join(bytes([epc, len(bytes.fromhex(v))]) + bytes.fromhex(v) for epc, v in properties)
    frame = bytes.fromhex("1081000102880105FF0172") + bytes([len(properties)]) + body
    out += broute.decode(frame, received_at=T0, device_id="M1", scaling=broute.Scaling()).readings
    return out


PLACEHOLDERS = "iammeter:29C9F55D"  # iammeterJS's format comment: values 0.0, 0.1, 0.2 ... (not measured)


def test_every_captured_vector_is_plausible() -> None:
    readings = captured_readings()
    real = [r for r in readings if r.meter_id != PLACEHOLDERS]
    assert len(real) >= 10 and {r.driver for r in real} == {"iammeter", "adw300", "evn", "broute"}
    assert {(r.meter_id, check(Plausibility(), r)) for r in real} == {(r.meter_id, None) for r in real}
    states: dict[str, Plausibility] = {}
    for r in sorted(real, key=lambda r: r.ts):  # as a sequence per meter, too
        assert check(states.setdefault(r.meter_id, Plausibility()), r) is None


def test_the_placeholder_vector_is_implausible() -> None:
    [placeholder] = [r for r in captured_readings() if r.meter_id == PLACEHOLDERS]
    assert check(Plausibility(), placeholder) == \
        "L1.voltage_v 0.0 V but current_a 0.1 A (a phase without voltage carries nothing)"


# --- Hypothesis -----------------------------------------------------------------------------------------

FLOATS = st.none() | st.floats() | st.sampled_from([0.0, 50.0, 230.0, 1.0])
INTS = st.none() | st.integers() | st.integers(min_value=0, max_value=10**7)
VALUES = st.builds(Values, voltage_v=FLOATS, current_a=FLOATS, power_w=FLOATS, power_factor=FLOATS,
                   frequency_hz=FLOATS, reactive_power_var=FLOATS, apparent_power_va=FLOATS,
                   energy_import_wh=INTS, energy_export_wh=INTS, reactive_energy_import_varh=INTS,
                   reactive_energy_export_varh=INTS)
READINGS = st.builds(
    lambda ts, total, phases, extra: Reading(meter_id="m:1", driver="m", ts=ts, received_at=ts, total=total,
                                             phases=phases, extra=extra),
    st.datetimes(timezones=st.just(UTC)), VALUES, st.dictionaries(st.sampled_from(["L1", "L2", "L3"]), VALUES),
    st.dictionaries(st.text(max_size=3), st.floats()))
LIMITS = st.builds(Limits, st.floats(min_value=1e-3, allow_infinity=True), st.floats(min_value=1e-3),
                   st.integers(min_value=0, max_value=10**6))


@settings(max_examples=300, deadline=None)
@given(st.lists(READINGS, max_size=8), LIMITS)
def test_check_never_raises_and_the_state_stays_json(readings: list[Reading], limits: Limits) -> None:
    state = Plausibility()
    for r in readings:
        result = check(state, r, limits)
        assert result is None or isinstance(result, str)
        assert Plausibility.load(json.loads(json.dumps(state.dump()))) == state


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**12), st.lists(st.tuples(st.integers(0, 86_400_000_000),
                                                                      st.floats(0, 1)), max_size=30))
def test_monotonic_slowly_rising_registers_are_always_accepted(start: int, steps: list[tuple[int, float]]) -> None:
    def at(ts_us: int, wh: int) -> Reading:
        ts = T0 + timedelta(microseconds=ts_us)
        return Reading(meter_id="iammeter:X", driver="iammeter", ts=ts, received_at=ts,
                       total=Values(energy_import_wh=wh, reactive_energy_export_varh=wh // 2))

    state, limits, ts_us, wh = Plausibility(), Limits(), 0, start
    assert check(state, at(ts_us, wh)) is None
    for dt_us, share in steps:
        ts_us += dt_us
        most = limits.max_power_w * dt_us / 3_600_000_000 + limits.register_slack_wh
        wh += int(share * most * (1 - 1e-12))  # up to what the meter could count (float rounding aside)
        assert check(state, at(ts_us, wh), limits) is None
