"""Debounce and 10-minute averages against values computed independently here (statistics, plain
grouping), including late readings, restarts through the JSON state and the clock guard."""

from __future__ import annotations

import json
import random
import statistics
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.logic.windows import MeterState, WindowConfig, step
from pipeline.models import Reading

T0 = datetime(2025, 6, 1, 10, 0, 0, tzinfo=UTC)


def reading(at: datetime, power: float, energy: int, l1: float | None = None) -> Reading:
    fields: dict[str, object] = {"meter_id": "iammeter:X", "driver": "iammeter", "ts": at, "received_at": at,
                                 "total": {"power_w": power, "energy_import_wh": energy}}
    if l1 is not None:
        fields["phases"] = {"L1": {"voltage_v": l1}}
    return Reading.model_validate(fields)


def sequence(seed: int = 3, count: int = 400) -> list[Reading]:
    rng = random.Random(seed)
    at, energy, out = T0, 1_000_000, []
    for _ in range(count):
        at += timedelta(seconds=rng.choice([3, 7, 11, 13.5]))
        energy += rng.randrange(0, 9)
        out.append(reading(at, round(rng.uniform(-3000, 5000), 1), energy, round(rng.gauss(230, 2), 1)))
    return out


def test_averages_match_an_independent_computation_once_per_window() -> None:
    readings = sequence()
    state, emitted = MeterState(), []
    for r in readings:
        emitted += step(state, r).averages
    groups: dict[datetime, list[Reading]] = {}
    for r in readings:
        groups.setdefault(r.ts.replace(minute=r.ts.minute - r.ts.minute % 10, second=0, microsecond=0), []).append(r)
    last_ts = readings[-1].ts
    closable = [start for start in groups if start + timedelta(minutes=11) <= last_ts]
    assert [a.start for a in emitted] == sorted(closable)  # once each, in order; the rest still open
    for average in emitted:
        group = groups[average.start]
        powers = [r.total.power_w for r in group]
        volts = [r.phases["L1"].voltage_v for r in group]
        assert average.end == average.start + timedelta(minutes=10)
        assert average.count == len(group)
        assert average.total["power_w"].mean == statistics.mean(powers)
        assert (average.total["power_w"].min, average.total["power_w"].max) == (min(powers), max(powers))
        assert average.phases["L1"]["voltage_v"].mean == statistics.mean(volts)
        energy = average.total["energy_import_wh"]
        assert energy.delta == group[-1].total.energy_import_wh - group[0].total.energy_import_wh
        assert isinstance(energy.min, int) and energy.count == len(group)


def test_a_reading_later_than_end_plus_grace_is_counted_and_left_out() -> None:
    state = MeterState()
    step(state, reading(T0 + timedelta(minutes=1), 100.0, 10))
    assert step(state, reading(T0 + timedelta(minutes=10, seconds=59), 200.0, 11)).averages == []  # in grace
    in_grace = step(state, reading(T0 + timedelta(minutes=9), 300.0, 12))  # late but window open: counted in
    assert not in_grace.late
    closing = step(state, reading(T0 + timedelta(minutes=11), 400.0, 13))
    assert [a.total["power_w"].mean for a in closing.averages] == [200.0]  # 100 and 300
    late = step(state, reading(T0 + timedelta(minutes=5), 999.0, 14))
    assert late.late and state.late == 1 and late.averages == []


def test_debounce_passes_the_first_reading_of_each_aligned_bucket() -> None:
    readings = sequence(seed=5)
    state = MeterState()
    passed = [r.ts for r in readings if step(state, r).debounced]
    expected, seen = [], set()
    for r in readings:
        bucket = (r.ts.hour, r.ts.minute // 5)
        if bucket not in seen:
            seen.add(bucket)
            expected.append(r.ts)
    assert passed == expected
    assert not step(state, reading(readings[0].ts, 1.0, 1)).debounced  # an old bucket never again


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=399))
def test_state_round_trips_through_json_at_any_point(cut: int) -> None:
    readings = sequence()
    whole, whole_out = MeterState(), []
    for r in readings:
        result = step(whole, r)
        whole_out.append((result.debounced, [a.to_json() for a in result.averages]))
    state, out = MeterState(), []
    for i, r in enumerate(readings):
        if i == cut:  # a restart: the state comes back from its changelog JSON
            state = MeterState.load(json.loads(json.dumps(state.dump())))
        result = step(state, r)
        out.append((result.debounced, [a.to_json() for a in result.averages]))
    assert out == whole_out


def test_a_clock_far_ahead_of_arrival_stays_out_of_windows() -> None:
    state = MeterState()
    step(state, reading(T0, 1.0, 1))
    future = reading(T0 + timedelta(days=365), 2.0, 2).model_copy(update={"received_at": T0})
    result = step(state, future)
    assert (result.debounced, result.averages, state.ahead) == (False, [], 1)
    assert state.watermark_us is not None and state.watermark_us < 1e18


def test_configurable_intervals() -> None:
    config = WindowConfig(debounce_us=60_000_000, window_us=120_000_000, grace_us=0)
    state = MeterState()
    out = [step(state, reading(T0 + timedelta(seconds=s), float(s), s), config) for s in range(0, 300, 30)]
    assert sum(o.debounced for o in out) == 5
    assert [a.total["power_w"].mean for o in out for a in o.averages] == [45.0, 165.0]
