"""The PV-surplus controller of DESIGN §4: one decision per grid reading of a site, a pure function of
the site's readings and their event times (the state is passed in and out, JSON in a changelogged table).

What counts as available: the charger's own draw minus the grid power (export is negative), averaged
over a sliding window, minus the residual power kept as a reserve. Then, as evcc decides it, without its
known faults:
- start only after the surplus has covered the minimum charge power (phases x V x min A) for the enable
  delay; stop only after it has been short of the minimum for the disable delay;
- while charging, the current follows the surplus in whole amperes, clamped to [min A, max A];
- 1p/3p switching ("auto") has its own conditions and delays: up when three phases at minimum current
  fit with a margin and one phase at maximum would not take it all, for the up delay and not sooner than
  the switch interval after the last switch; down when three phases at minimum do not fit any more, for
  the down delay (default: the disable delay, so a passing cloud is ridden out as evcc does).
  A charger that draws more than the surplus (held at minimum current) switches down or stops within
  the disable delay:
  `phase_down_delay_seconds` is validated to be at most `disable_delay_seconds`, and a stop is not
  delayed by a pending switch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pipeline.logic.windows import from_us, to_us
from pipeline.models import Reading, SurplusSignal
from pipeline.settings import Role, Site

STALE_US = 300_000_000  # a PV or charger value older than this (event time) no longer counts


def power_of(reading: Reading) -> float | None:
    """The reading's total active power, or the sum of its phases'."""
    if reading.total.power_w is not None:
        return reading.total.power_w
    phases = [v.power_w for v in reading.phases.values() if v.power_w is not None]
    return sum(phases) if phases else None


@dataclass
class SiteState:
    grid_us: int | None = None  # event time of the last grid reading decided on; replays are ignored
    samples: list[tuple[int, float]] = field(default_factory=list)  # (ts, charger draw - grid) in the window
    pv: dict[str, tuple[int, float]] = field(default_factory=dict)  # meter → (ts, production W)
    charger: dict[str, tuple[int, float]] = field(default_factory=dict)  # meter → (ts, draw W)
    charging: bool = False
    phases: Literal[1, 3] = 3
    current_a: float = 0.0
    enable_since: int | None = None  # surplus has covered the minimum since
    short_since: int | None = None  # while charging: surplus short of the current phases' minimum since
    up_since: int | None = None
    down_since: int | None = None
    switched_at: int | None = None  # the last 1p/3p switch

    def dump(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, data: dict[str, Any]) -> SiteState:
        data = {**data, "samples": [tuple(s) for s in data["samples"]],
                "pv": {k: tuple(v) for k, v in data["pv"].items()},
                "charger": {k: tuple(v) for k, v in data["charger"].items()}}
        return cls(**data)


def _power(site: Site, phases: int, current_a: float) -> float:
    return phases * site.voltage_v * current_a


def _fit(site: Site, phases: int, usable: float) -> float:
    """The largest whole current that the usable power covers, clamped to [min, max]."""
    current = math.floor(usable / (phases * site.voltage_v))
    return float(min(max(current, site.min_current_a), site.max_current_a))


def _recent(values: dict[str, tuple[int, float]], now: int) -> float | None:
    fresh = [w for ts, w in values.values() if now - ts <= STALE_US]
    return sum(fresh) if fresh else None


def on_reading(site: Site, state: SiteState, reading: Reading, role: Role) -> SurplusSignal | None:
    """Apply one reading of a site's meter; a grid reading gives a decision (state mutated in place)."""
    power = power_of(reading)
    if power is None:
        return None
    now = to_us(reading.ts)
    if role in ("pv", "charger"):
        values = state.pv if role == "pv" else state.charger
        if reading.meter_id not in values or values[reading.meter_id][0] < now:
            # PV meters count production whichever way round they are installed
            values[reading.meter_id] = (now, abs(power) if role == "pv" else max(power, 0.0))
        return None
    if role != "grid" or (state.grid_us is not None and now <= state.grid_us):
        return None  # out of order or repeated: the decision at that time has been made
    state.grid_us = now
    if site.phases != "auto":
        state.phases = site.phases
    if site.charger_draw == "meter":
        draw = _recent(state.charger, now) or 0.0
    else:
        draw = _power(site, state.phases, state.current_a) if state.charging else 0.0
    state.samples = [(ts, w) for ts, w in state.samples if ts > now - site.window_seconds * 1e6]
    state.samples.append((now, draw - power))
    surplus = math.fsum(w for _, w in state.samples) / len(state.samples)
    reason = _decide(site, state, now, surplus - site.residual_w)
    return SurplusSignal(
        site=site.name, ts=from_us(now), grid_w=power, pv_w=_recent(state.pv, now), charger_w=draw,
        surplus_w=round(surplus, 1), charge=state.charging, phases=state.phases,
        current_a=state.current_a if state.charging else 0.0,
        power_w=_power(site, state.phases, state.current_a) if state.charging else 0.0, reason=reason)


def _decide(site: Site, st: SiteState, now: int, usable: float) -> str:
    def since(start: int) -> float:
        return (now - start) / 1e6

    lowest: Literal[1, 3] = 1 if site.phases == "auto" else site.phases
    if not st.charging:
        minimum = _power(site, lowest, site.min_current_a)
        if usable < minimum:
            st.enable_since = None
            return f"surplus {usable:.0f} W below the {minimum:.0f} W minimum"
        if st.enable_since is None:
            st.enable_since = now
        if since(st.enable_since) < site.enable_delay_seconds:
            return (f"surplus {usable:.0f} W covers {minimum:.0f} W for {since(st.enable_since):.0f} s "
                    f"of {site.enable_delay_seconds:.0f} s")
        st.charging, st.enable_since = True, None
        st.phases = (3 if usable >= _power(site, 3, site.min_current_a) else 1) if site.phases == "auto" \
            else site.phases
        st.current_a = _fit(site, st.phases, usable)
        return f"start: surplus {usable:.0f} W covered {minimum:.0f} W for {site.enable_delay_seconds:.0f} s"

    switched = _switch_phases(site, st, now, usable, since) if site.phases == "auto" else None
    need = _power(site, st.phases, site.min_current_a)
    if usable >= need:
        st.short_since = None
        st.current_a = _fit(site, st.phases, usable)
        return switched or f"surplus {usable:.0f} W: {st.phases}p {st.current_a:.0f} A"
    if st.short_since is None:
        st.short_since = now
    if since(st.short_since) >= site.disable_delay_seconds:
        st.charging, st.current_a = False, 0.0
        st.short_since = st.up_since = st.down_since = None
        return f"stop: surplus {usable:.0f} W short of {need:.0f} W for {site.disable_delay_seconds:.0f} s"
    st.current_a = site.min_current_a
    return switched or (f"surplus {usable:.0f} W short of {need:.0f} W for {since(st.short_since):.0f} s "
                        f"of {site.disable_delay_seconds:.0f} s")


def _switch_phases(site: Site, st: SiteState, now: int, usable: float, since: Callable[[int], float]) -> str | None:
    """Up is a choice: its own delay, a margin, and not within the switch interval of the last switch.
    Down is a need (three phases at minimum draw more than the surplus): only its delay."""
    three_min = _power(site, 3, site.min_current_a)
    if st.phases == 1:
        st.down_since = None
        if usable < max(three_min + site.phase_up_margin_w, _power(site, 1, site.max_current_a)):
            st.up_since = None
            return None
        if st.up_since is None:
            st.up_since = now
        if since(st.up_since) < site.phase_up_delay_seconds or (
                st.switched_at is not None and since(st.switched_at) < site.phase_switch_interval_seconds):
            return None
        st.phases, st.switched_at, st.up_since, st.short_since = 3, now, None, None
        return f"switch to 3 phases: surplus {usable:.0f} W for {site.phase_up_delay_seconds:.0f} s"
    st.up_since = None
    if usable >= three_min:
        st.down_since = None
        return None
    if st.down_since is None:
        st.down_since = now
    if since(st.down_since) < site.down_delay_seconds or usable < _power(site, 1, site.min_current_a):
        return None
    st.phases, st.switched_at, st.down_since, st.short_since = 1, now, None, None
    return f"switch to 1 phase: surplus {usable:.0f} W short of {three_min:.0f} W for {site.down_delay_seconds:.0f} s"
