"""The PV-surplus controller: one decision per grid reading of a site, a pure function of
the site's readings, its chargers' mode commands and their event times (the state is passed in and out,
JSON in a changelogged table).

What counts as available: the chargers' own draw minus the grid power (export is negative), plus what
the house battery charges at or above its priority SoC, minus what it discharges (a battery's energy is
not surplus); averaged over a sliding window, minus the residual power kept as a reserve. The chargers
share it by priority: each one decides (`logic.loadpoint`, as evcc does without its known faults) on
what the ones before it left, so a lower one takes what a higher one cannot use. The house battery may
hold or start only the first charger. docs/charging.md says how it behaves and why.

A site's settings come in as any object with the attributes of `SiteConfig` (the meters file's
`pipeline.sites.Site`, built from its `[[site]]` and `[[charger]]` entries); this module does not read
settings itself.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, NamedTuple, Protocol

from pipeline.logic.loadpoint import Available, ChargerState, Gate, Loadpoint, Timing, decide
from pipeline.models import SOC, ChargerDecision, ModeCommand, Reading, SurplusSignal, from_us, to_us

# The part a meter plays for its site
Role = Literal["grid", "pv", "charger", "battery", "other"]


class Feed(NamedTuple):
    """A meter that feeds a site's surplus: the site and the part it plays there."""

    site: str
    role: Role


NO_FEED = Feed("", "other")


class SiteConfig(Protocol):
    """What the controller reads of a site's settings (`pipeline.sites.Site` has them all)."""

    @property
    def name(self) -> str: ...
    @property
    def chargers(self) -> tuple[Loadpoint, ...]: ...  # highest priority first
    @property
    def charger_draw(self) -> Literal["meter", "setpoint"]: ...
    @property
    def window_seconds(self) -> float: ...
    @property
    def residual_w(self) -> float: ...
    @property
    def battery_priority_soc(self) -> float: ...
    @property
    def battery_buffer_soc(self) -> float | None: ...
    @property
    def battery_start_soc(self) -> float | None: ...
    @property
    def enable_delay_seconds(self) -> float: ...
    @property
    def disable_delay_seconds(self) -> float: ...
    @property
    def phase_up_delay_seconds(self) -> float: ...
    @property
    def down_delay_seconds(self) -> float: ...
    @property
    def phase_up_margin_w(self) -> float: ...
    @property
    def phase_switch_interval_seconds(self) -> float: ...
    @property
    def min_charge_seconds(self) -> float: ...
    @property
    def stop_window_seconds(self) -> float: ...
    @property
    def start_margin_w(self) -> float: ...

STALE_US = 300_000_000  # a PV, charger or battery value older than this (event time) no longer counts
MAX_GAP_US = 300_000_000  # a longer gap between two grid readings is not counted as charging time


def power_of(reading: Reading) -> float | None:
    """The reading's total active power, or the sum of its phases'."""
    if reading.total.power_w is not None:
        return reading.total.power_w
    phases = [v.power_w for v in reading.phases.values() if v.power_w is not None]
    return sum(phases) if phases else None


@dataclass
class SiteState:
    grid_us: int | None = None  # event time of the last grid reading decided on; replays are ignored
    samples: list[tuple[int, float]] = field(default_factory=list)  # (ts, available W) in the window
    pv: dict[str, tuple[int, float]] = field(default_factory=dict)  # meter → (ts, production W)
    charger: dict[str, tuple[int, float]] = field(default_factory=dict)  # meter → (ts, draw W)
    battery: dict[str, tuple[int, float, float | None]] = field(default_factory=dict)  # meter → (ts, W, SoC)
    chargers: dict[str, ChargerState] = field(default_factory=dict)
    changed_at: int | None = None  # the controller's last start or stop of a charger at this site

    def dump(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, data: dict[str, Any]) -> SiteState:
        """The state `dump` wrote; one written before a site had several chargers keeps its samples and
        meters, and its chargers start afresh."""
        known = {f.name for f in fields(ChargerState)}
        return cls(grid_us=data["grid_us"], samples=[tuple(s) for s in data["samples"]],
                   pv={k: tuple(v) for k, v in data["pv"].items()},
                   charger={k: tuple(v) for k, v in data["charger"].items()},
                   battery={k: tuple(v) for k, v in data.get("battery", {}).items()},
                   chargers={k: ChargerState(**{f: x for f, x in v.items() if f in known})
                             for k, v in data.get("chargers", {}).items()},
                   changed_at=data.get("changed_at"))

    def charger_state(self, lp: Loadpoint) -> ChargerState:
        if lp.name not in self.chargers:
            self.chargers[lp.name] = ChargerState(mode=lp.mode)
        return self.chargers[lp.name]


def _recent(values: dict[str, tuple[int, float]], now: int) -> float | None:
    fresh = [w for ts, w in values.values() if now - ts <= STALE_US]
    return sum(fresh) if fresh else None


def timing(site: SiteConfig) -> Timing:
    return Timing(site.enable_delay_seconds, site.disable_delay_seconds, site.phase_up_delay_seconds,
                  site.down_delay_seconds, site.phase_up_margin_w, site.phase_switch_interval_seconds,
                  site.min_charge_seconds, site.stop_window_seconds,
                  site.start_margin_w)


def on_command(site: SiteConfig, state: SiteState, command: ModeCommand) -> None:
    """Apply a mode set for one of the site's chargers: the next grid reading decides under it."""
    lp = next((lp for lp in site.chargers if lp.name == command.charger), None)
    if lp is None:
        raise ValueError(f"site {site.name} has no charger {command.charger!r} "
                         f"(there are {', '.join(lp.name for lp in site.chargers)})")
    target = None if command.target_kwh is None else command.target_kwh * 1000
    until = None if command.until is None else to_us(command.until)
    st = state.charger_state(lp)
    if (st.mode, st.target_wh, st.until_us) != (command.mode, target, until):  # a set repeated changes nothing
        st.set_mode(command.mode, target, until)


def on_reading(site: SiteConfig, state: SiteState, reading: Reading, role: Role) -> SurplusSignal | None:
    """Apply one reading of a site's meter; a grid reading gives a decision (state mutated in place)."""
    power = power_of(reading)
    if power is None:
        return None
    now = to_us(reading.ts)
    if role == "battery":
        last = state.battery.get(reading.meter_id)
        if last is None or last[0] < now:
            state.battery[reading.meter_id] = (now, power, reading.extra.get(SOC))
        return None
    if role in ("pv", "charger"):
        values = state.pv if role == "pv" else state.charger
        if reading.meter_id not in values or values[reading.meter_id][0] < now:
            # PV meters count production whichever way round they are installed
            values[reading.meter_id] = (now, abs(power) if role == "pv" else max(power, 0.0))
        return None
    if role != "grid" or (state.grid_us is not None and now <= state.grid_us):
        return None  # out of order or repeated: the decision at that time has been made
    chargers = [(lp, state.charger_state(lp)) for lp in site.chargers]
    elapsed = 0 if state.grid_us is None else min(now - state.grid_us, MAX_GAP_US)
    state.grid_us = now
    allowed = [st.power(lp) for lp, st in chargers]  # what the last decisions let them draw
    if site.charger_draw == "meter":
        draw = _recent(state.charger, now) or 0.0
        own = [_measured(state, lp, now) for lp, _ in chargers]
    else:
        draw, own = sum(allowed), [None] * len(chargers)
    for (lp, st), watts, seen in zip(chargers, allowed, own, strict=True):  # since the last grid reading
        st.charged_wh += (watts if seen is None else min(watts, seen)) * elapsed / 3.6e9
        short = seen is not None and st.charging and seen < watts - lp.power(st.phases, 1)
        st.unused_since = (st.unused_since or now) if short else None
    battery_w, soc = _battery(state, now)
    counted = 0.0 if battery_w is None else battery_w if battery_w < 0 or (
        soc is not None and soc >= site.battery_priority_soc) else 0.0
    state.samples = [(ts, w) for ts, w in state.samples if ts > now - site.window_seconds * 1e6]
    available = draw - power + counted
    state.samples.append((now, available))
    surplus = math.fsum(w for _, w in state.samples) / len(state.samples)
    left = Available(surplus - site.residual_w, available - site.residual_w, elapsed)
    since_change = math.inf if state.changed_at is None else (now - state.changed_at) / 1e6
    t = timing(site)
    for index, ((lp, st), seen) in enumerate(zip(chargers, own, strict=True)):
        first = index == 0
        gate = Gate(may_start=since_change >= t.enable, may_stop=since_change >= t.disable,
                    hold=first and _at_least(soc, site.battery_buffer_soc),
                    start=first and _at_least(soc, site.battery_start_soc))
        was = st.charging
        decide(lp, st, t, now, left, gate)
        if st.charging != was and st.mode == "pv":  # the controller's own start or stop
            state.changed_at, since_change = now, 0.0
        # a charger whose own meter has shown it drawing an ampere or more below its allowance for the
        # enable delay (a full car) leaves the rest to the next
        leaves = seen is not None and st.unused_since is not None and now - st.unused_since >= t.enable * 1e6
        left = left.minus(min(st.power(lp), seen) if leaves and seen is not None else st.power(lp))
    decisions = {lp.name: _decision(lp, st) for lp, st in chargers}
    lead = decisions[chargers[0][0].name]
    return SurplusSignal(
        site=site.name, ts=from_us(now), grid_w=power, pv_w=_recent(state.pv, now), charger_w=draw,
        battery_w=battery_w, battery_soc=soc, surplus_w=round(surplus, 1), charge=lead.charge, phases=lead.phases,
        current_a=lead.current_a, power_w=sum(d.power_w for d in decisions.values()), reason=lead.reason,
        chargers=decisions)


def _decision(lp: Loadpoint, st: ChargerState) -> ChargerDecision:
    return ChargerDecision(
        charge=st.charging, phases=st.phases, current_a=st.current_a if st.charging else 0.0,
        power_w=st.power(lp), mode=st.mode, reason=st.reason,
        target_kwh=None if st.target_wh is None else st.target_wh / 1000,
        until=None if st.until_us is None else from_us(st.until_us), charged_kwh=round(st.charged_wh / 1000, 3))


def _measured(state: SiteState, lp: Loadpoint, now: int) -> float | None:
    """What the charger's own meters (`Loadpoint.meters`) show it drawing, if they are fresh."""
    return _recent({m: state.charger[m] for m in lp.meters if m in state.charger}, now)


def _at_least(soc: float | None, level: float | None) -> bool:
    return soc is not None and level is not None and soc >= level


def _battery(state: SiteState, now: int) -> tuple[float | None, float | None]:
    """The site's battery power (sum of its fresh meters) and SoC (their mean, where they send it)."""
    fresh = [(w, soc) for ts, w, soc in state.battery.values() if now - ts <= STALE_US]
    if not fresh:
        return None, None
    socs = [soc for _, soc in fresh if soc is not None]
    return math.fsum(w for w, _ in fresh), (sum(socs) / len(socs) if socs else None)
