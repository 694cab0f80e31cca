"""The plausibility check: every rule with its reason text, glitches, a replaced meter, restarts through the
JSON state (real data and Hypothesis: test_plausible_properties.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.logic.plausible import REPLACEMENT_READINGS, REPLACEMENT_SECONDS, Limits, Plausibility, check
from pipeline.models import MAX_INTEGER, Reading

T0 = datetime(2025, 6, 1, 10, 0, 0, tzinfo=UTC)
US0 = int(T0.timestamp()) * 1_000_000  # T0 in the state's microseconds
NAN, INF = float("nan"), float("inf")


def reading(seconds: float = 0, total: dict[str, Any] | None = None, **phases: dict[str, Any]) -> Reading:
    at = T0 + timedelta(seconds=seconds)
    return Reading.model_validate({"meter_id": "iammeter:X", "driver": "iammeter", "ts": at, "received_at": at,
                                   "total": total or {}, "phases": phases})


def energy(seconds: float, wh: int) -> Reading:
    return reading(seconds, {"power_w": 500.0, "energy_import_wh": wh})


def run(readings: list[Reading], state: Plausibility | None = None, limits: Limits | None = None) -> list[str | None]:
    state = Plausibility() if state is None else state
    return [check(state, r, limits or Limits()) for r in readings]


# --- rule 1: ranges -------------------------------------------------------------------------------------

LIVE = {"voltage_v": 230.0, "current_a": 1.0, "power_w": 230.0, "frequency_hz": 50.0, "power_factor": 1.0}


@pytest.mark.parametrize(("phase", "reason"), [
    ({"voltage_v": 10000.0}, "L2.voltage_v 10000.0 V is outside 50..1000 V"),
    ({"voltage_v": 49.9}, "L2.voltage_v 49.9 V is outside 50..1000 V"),
    ({"voltage_v": 1000.1}, "L2.voltage_v 1000.1 V is outside 50..1000 V"),
    ({"voltage_v": -230.0}, "L2.voltage_v -230.0 V is outside 50..1000 V"),
    ({"voltage_v": 0.0, "current_a": 0.3}, "L2.voltage_v 0.0 V but current_a 0.3 A (a phase without voltage "
                                           "carries nothing)"),
    ({"voltage_v": 0.0, "power_w": -1.5}, "L2.voltage_v 0.0 V but power_w -1.5 W"),
    ({"voltage_v": 0.0, "reactive_power_var": 2.0}, "L2.voltage_v 0.0 V but reactive_power_var 2.0 var"),
    ({"frequency_hz": 44.9}, "L2.frequency_hz 44.9 Hz is outside 45..65 Hz"),
    ({"frequency_hz": 65.1}, "L2.frequency_hz 65.1 Hz is outside 45..65 Hz"),
    ({"voltage_v": 230.0, "frequency_hz": 0.0}, "L2.frequency_hz 0.0 Hz while the meter measures a voltage"),
    ({"frequency_hz": 0.0}, "L2.frequency_hz 0.0 Hz while the meter measures a voltage"),  # L1 has 230 V
    ({"voltage_v": 0.0, "frequency_hz": 0.0, "apparent_power_va": 5.0}, "L2.voltage_v 0.0 V but apparent_power_va"),
    ({"power_factor": 1.01}, "L2.power_factor 1.01 is outside -1..1"),
    ({"power_factor": -1.5}, "L2.power_factor -1.5 is outside -1..1"),
    ({"current_a": -100.5}, "L2.current_a -100.5 A is beyond ±100 A"),
    ({"power_w": 50_001.0}, "L2.power_w 50001.0 W is beyond ±50000 W"),
    ({"apparent_power_va": 60_000.0}, "L2.apparent_power_va 60000.0 VA is beyond ±50000 VA"),
    ({"reactive_power_var": -60_000.0}, "L2.reactive_power_var -60000.0 var is beyond ±50000 var"),
    ({"energy_import_wh": -1}, "L2.energy_import_wh -1 Wh is outside 0..9223372036854775807 Wh"),
    ({"reactive_energy_export_varh": MAX_INTEGER + 1}, "L2.reactive_energy_export_varh 9223372036854775808 varh"),
    ({"power_w": NAN}, "L2.power_w nan is not a finite number"),
    ({"voltage_v": INF}, "L2.voltage_v inf is not a finite number"),
    ({"frequency_hz": -INF}, "L2.frequency_hz -inf is not a finite number"),
])
def test_ranges(phase: dict[str, Any], reason: str) -> None:
    state = Plausibility()
    result = check(state, reading(0, L1=LIVE, L2=phase))
    assert result is not None and result.startswith(reason), result
    assert state == Plausibility()


@pytest.mark.parametrize("phase", [
    {"voltage_v": 50.0}, {"voltage_v": 1000.0}, {"frequency_hz": 45.0}, {"frequency_hz": 65.0},
    {"frequency_hz": 60.0}, {"power_factor": 1.0000005}, {"power_factor": -1.0}, {"current_a": -100.0},
    {"power_w": -50_000.0}, {"voltage_v": 0.0, "current_a": 0.05, "power_w": -1.0, "apparent_power_va": 1.0},
    {"voltage_v": 0.0, "frequency_hz": 0.0, "current_a": 0.0, "power_w": 0.0},
    {"voltage_v": 0.0, "frequency_hz": 50.0},  # the meter takes the frequency from a live phase
])
def test_range_edges_are_plausible(phase: dict[str, Any]) -> None:
    assert check(Plausibility(), reading(0, L1=LIVE, L2=phase)) is None


def test_three_phase_meter_on_a_single_phase_supply() -> None:
    dead = {"voltage_v": 0.0, "current_a": 0.0, "power_w": 0.0}
    state = Plausibility()
    assert run([reading(s, {"energy_import_wh": 1000 + s}, L1=LIVE, L2=dead, L3=dead) for s in range(0, 50, 5)],
               state) == [None] * 10


def test_a_meter_without_any_supply_may_show_0_hz() -> None:
    dead = {"voltage_v": 0.0, "current_a": 0.0, "power_w": 0.0, "power_factor": 1.0}
    assert check(Plausibility(), reading(0, {"frequency_hz": 0.0, "power_w": 0.0}, L1=dead, L2=dead)) is None
    assert check(Plausibility(), reading(0, {"frequency_hz": 0.0, "power_w": 30.0}, L1=dead)) == \
        "total.frequency_hz 0.0 Hz but power_w 30.0 W (without supply nothing flows)"


def test_limits_are_per_meter_and_extra_is_only_checked_for_finite_and_a_state_of_charge() -> None:
    big = Limits(max_power_w=200_000.0, max_current_a=400.0)
    assert check(Plausibility(), reading(0, {"power_w": 150_000.0, "current_a": 300.0}), big) is None
    assert check(Plausibility(), reading(0, {"power_w": 150_000.0})) == \
        "total.power_w 150000.0 W is beyond ±50000 W"
    weird = reading(0).model_copy(update={"extra": {"temperature_c": 5000.0}})
    assert check(Plausibility(), weird) is None
    assert check(Plausibility(), reading(0).model_copy(update={"extra": {"t": NAN}})) == \
        "extra.t nan is not a finite number"
    for soc, problem in ((0.0, None), (100.0, None), (100.5, "extra.soc_pct 100.5 % is no state of charge (0..100 %)"),
                         (-1.0, "extra.soc_pct -1.0 % is no state of charge (0..100 %)")):
        assert check(Plausibility(), reading(0).model_copy(update={"extra": {"soc_pct": soc}})) == problem


# --- rule 2: registers ----------------------------------------------------------------------------------

def test_first_value_is_accepted_and_backwards_refused() -> None:
    state = Plausibility()
    assert check(state, energy(0, 908690)) is None
    assert check(state, energy(10, 12)) == ("total.energy_import_wh went back from 908690 to 12 Wh "
                                            "(1 of 3 readings to accept as a replaced meter)")
    assert state.registers == {"total.energy_import_wh": (908690, US0)}


def test_a_register_may_rise_by_max_power_times_time_plus_slack() -> None:
    # 60 s at 50 kW: 833.3 Wh, + 1000 Wh slack
    assert run([energy(0, 10_000), energy(60, 11_833)]) == [None, None]
    assert run([energy(0, 10_000), energy(60, 11_834)])[1] == (
        "total.energy_import_wh rose from 10000 to 11834 Wh in 60 s (at most 1833 Wh at 50000 W) "
        "(1 of 3 readings to accept as a replaced meter)")
    assert run([energy(0, 10_000), energy(0, 11_000)]) == [None, None]  # the same instant: the slack
    assert run([energy(0, 10_000), energy(0, 11_001)])[1] is not None
    slow = Limits(max_power_w=3600.0, register_slack_wh=0)  # 1 Wh per second
    assert run([energy(0, 0), energy(10, 10)], limits=slow) == [None, None]
    assert run([energy(0, 0), energy(10, 11)], limits=slow)[1] is not None


def test_every_register_of_every_scope_is_compared() -> None:
    def r(seconds: float, l3_varh: int) -> Reading:
        return reading(seconds, {"energy_export_wh": 5}, L3={"reactive_energy_export_varh": l3_varh})
    assert run([r(0, 700), r(5, 690)])[1] == ("L3.reactive_energy_export_varh went back from 700 to 690 varh "
                                              "(1 of 3 readings to accept as a replaced meter)")


def test_a_glitch_that_jumps_back_and_forth_is_refused_and_the_series_goes_on() -> None:
    state = Plausibility()
    results = run([energy(0, 908_690), energy(5, 908_691), energy(10, 12), energy(15, 908_692),
                   energy(20, 908_693)], state)
    assert results[2] is not None and results[2].startswith("total.energy_import_wh went back from 908691 to 12")
    assert [results[i] for i in (0, 1, 3, 4)] == [None] * 4
    assert state.registers["total.energy_import_wh"][0] == 908_693 and state.candidate is None


def test_a_flipped_high_byte_jump_up_is_refused() -> None:
    state = Plausibility()
    up = 908_690 + (1 << 24)  # a bit flip in the third byte of a uint32
    results = run([energy(0, 908_690), energy(5, up), energy(10, up + 1), energy(15, 908_700)], state)
    assert results[1] == (f"total.energy_import_wh rose from 908690 to {up} Wh in 5 s (at most 1069 Wh at 50000 W) "
                          "(1 of 3 readings to accept as a replaced meter)")
    assert results[2] is not None and results[2].endswith("(2 of 3 readings to accept as a replaced meter)")
    assert results[3] is None and state.candidate is None


def test_out_of_order_readings_lie_between_what_the_meter_could_count_and_the_later_value() -> None:
    state = Plausibility()
    assert run([energy(60, 10_000), energy(0, 9_500), energy(0, 10_000)], state) == [None, None, None]
    assert state.registers == {"total.energy_import_wh": (10_000, US0 + 60_000_000)}  # not moved back
    assert check(state, energy(0, 10_001)) == ("total.energy_import_wh 10001 Wh is above 10000 Wh of a reading "
                                               "60 s later (1 of 3 readings to accept as a replaced meter)")
    assert check(state, energy(0, 8_166)) == (
        "total.energy_import_wh 8166 Wh is more than 1833 Wh below 10000 Wh of a reading 60 s later "
        "(1 of 3 readings to accept as a replaced meter)")
    assert check(state, energy(0, 8_167)) is None
    assert check(state, energy(70, 10_001)) is None and state.candidate is None


def test_range_errors_change_nothing() -> None:
    state = Plausibility()
    run([energy(0, 100), energy(10, 5)], state)
    before = Plausibility.load(state.dump())
    assert check(state, reading(20, {"energy_import_wh": 99_999_999, "frequency_hz": 80.0})) is not None
    assert state == before


# --- rule 3: a replaced meter ---------------------------------------------------------------------------

def test_a_replaced_meter_is_accepted_after_3_readings_over_60_s_and_goes_on() -> None:
    state = Plausibility()
    results = run([energy(0, 908_690), energy(30, 12), energy(60, 20), energy(90, 30), energy(120, 40),
                   energy(150, 908_700)], state)
    assert results[:5] == [None,
                           "total.energy_import_wh went back from 908690 to 12 Wh "
                           "(1 of 3 readings to accept as a replaced meter)",
                           "total.energy_import_wh went back from 908690 to 20 Wh "
                           "(2 of 3 readings to accept as a replaced meter)",
                           None, None]
    assert results[5] == ("total.energy_import_wh rose from 40 to 908700 Wh in 30 s (at most 1417 Wh at 50000 W) "
                          "(1 of 3 readings to accept as a replaced meter)")  # the old series is gone
    assert REPLACEMENT_READINGS == 3 and REPLACEMENT_SECONDS == 60


def test_a_replacement_also_needs_60_s_of_event_time() -> None:
    state = Plausibility()
    results = run([energy(0, 908_690), *(energy(s, 12 + s) for s in range(5, 70, 5))], state)
    assert results[3] == ("total.energy_import_wh went back from 908690 to 27 Wh (3 readings over 10 of 60 s "
                          "to accept as a replaced meter)")
    assert results[12] is not None and "(12 readings over 55 of 60 s" in results[12]
    assert results[13] is None and state.registers["total.energy_import_wh"] == (12 + 65, US0 + 65_000_000)


def test_an_inconsistent_candidate_starts_again() -> None:
    state = Plausibility()
    results = run([energy(0, 908_690), energy(30, 500), energy(60, 12), energy(90, 20), energy(120, 30)], state)
    assert [r[r.rindex("("):] if r else r for r in results] == [
        None, "(1 of 3 readings to accept as a replaced meter)", "(1 of 3 readings to accept as a replaced meter)",
        "(2 of 3 readings to accept as a replaced meter)", None]


def test_readings_without_registers_do_not_drop_a_candidate() -> None:
    # B-route: E0 (energy) every 300 s, E7 (power) every 10 s in readings of their own
    state = Plausibility()
    sequence = [energy(0, 908_690)]
    for minute in range(1, 4):
        sequence += [reading(minute * 300 - 10, {"power_w": 400.0}), energy(minute * 300, 12 + minute)]
    results = run(sequence, state)
    assert results[2].endswith("(1 of 3 readings to accept as a replaced meter)")  # type: ignore[union-attr]
    assert results[1::2] == [None, None, None] and results[6] is None
    assert state.registers["total.energy_import_wh"][0] == 15


# --- the state ------------------------------------------------------------------------------------------

def mixed_sequence() -> list[Reading]:
    out, wh = [], 1_000_000
    for i in range(60):
        wh += 3 if i != 20 else -999_000  # a replaced meter at reading 20; a glitch at 45
        value = 5 if i == 45 else wh
        out.append(reading(i * 7, {"energy_import_wh": value, "energy_export_wh": i // 10},
                           L1={**LIVE, "energy_import_wh": wh // 3}))
    out.insert(30, reading(5, {"energy_import_wh": 900}, L1={"voltage_v": 2.0}))  # out of range, out of order
    out.insert(40, out[35].model_copy(update={"ts": out[35].ts - timedelta(seconds=3)}))  # out of order
    return out


def test_state_round_trips_through_json_at_any_point() -> None:
    readings = mixed_sequence()
    whole = run(readings)
    assert whole.count(None) > 40 and len(set(whole)) > 5  # the sequence exercises every path
    for cut in range(len(readings) + 1):
        state = Plausibility()
        first = run(readings[:cut], state)
        dumped = json.loads(json.dumps(state.dump()))
        restored = Plausibility.load(dumped)
        assert restored == state and restored.dump() == dumped
        assert first + run(readings[cut:], restored) == whole


def test_a_clock_far_ahead_of_the_arrival_is_implausible() -> None:
    state = Plausibility()
    ahead = reading(0, {"energy_import_wh": 100}).model_copy(update={"received_at": T0 - timedelta(minutes=6)})
    assert check(state, ahead) == ("ts 2025-06-01T10:00:00Z is more than 0:05:00 after it arrived "
                                   "(2025-06-01T09:54:00Z): the meter's clock is wrong")
    assert state == Plausibility()  # remembered nothing
    assert check(state, ahead.model_copy(update={"received_at": T0 - timedelta(minutes=5)})) is None
