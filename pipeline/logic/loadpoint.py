"""One charger of a site (a loadpoint, in evcc's word): its limits, its state, and its decision at a grid
reading from the power the chargers of higher priority left to it (`logic.surplus` shares the surplus).

Modes: `off` stops at once; `now` charges at the maximum (grid allowed) until its target — energy charged
since the mode was set, or a time — is reached, then goes back to `pv`; `minpv` charges at least at the
minimum and more with surplus; `pv` charges from surplus only:
- start when the surplus at each reading has covered the minimum power and a margin for the enable
  delay (the average over the window would still carry a spike that has passed);
- once started, a session lasts at least `min_charge_seconds` (relay and car wear, as OpenEVSE does),
  then stops after the surplus left to it has been short of the minimum for the disable delay and its
  slow smoothing (`ChargerState.slow`) is short too: a passing cloud is ridden out at minimum current;
- the current follows the surplus at each reading in whole amperes within [min, max]; 1p/3p switching ("auto") has its
  own delays, margin and interval (see `_switch_phases`);
- the site's house battery may hold a charging car at minimum current, or start it (`Gate`).
A user's mode change acts at once (no delay, no minimum time); the controller's own starts and stops at
a site are at least a delay apart (`Gate`), so two chargers never start and stop against each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pipeline.models import Mode

Phases = Literal[1, 3, "auto"]


@dataclass(frozen=True)
class Loadpoint:
    """One charger's limits (`Charger.loadpoint`, `Site.chargers`)."""

    name: str
    priority: int
    voltage_v: float
    min_current_a: float
    max_current_a: float
    phases: Phases
    mode: Mode  # the mode it starts in, until one is set
    meters: tuple[str, ...] = ()  # the `charger` meters that measure its draw

    def power(self, phases: int, current_a: float) -> float:
        return phases * self.voltage_v * current_a

    def fit(self, phases: int, usable: float) -> float:
        """The largest whole current that the usable power covers, clamped to [min, max]."""
        current = math.floor(usable / (phases * self.voltage_v))
        return float(min(max(current, self.min_current_a), self.max_current_a))

    @property
    def lowest(self) -> Literal[1, 3]:
        return 1 if self.phases == "auto" else self.phases

    @property
    def highest(self) -> Literal[1, 3]:
        return 3 if self.phases == "auto" else self.phases


@dataclass(frozen=True)
class Timing:
    """The site's delays (seconds), shared by its chargers."""

    enable: float
    disable: float
    phase_up: float
    phase_down: float
    phase_up_margin_w: float
    phase_interval: float
    min_charge: float
    stop_window: float
    start_margin_w: float


@dataclass(frozen=True)
class Available:
    """The surplus left to a charger (W, after the residual power): averaged over the window and at this
    reading; `elapsed_us` since the site's last grid reading."""

    average: float
    now: float
    elapsed_us: int

    def minus(self, watts: float) -> Available:
        return Available(self.average - watts, self.now - watts, self.elapsed_us)


@dataclass(frozen=True)
class Gate:
    """What this reading allows beyond one charger: the controller's starts and stops at a site are a
    delay apart, and the house battery may hold (buffer SoC) or start (start SoC) a car."""

    may_start: bool
    may_stop: bool
    hold: bool = False
    start: bool = False


@dataclass
class ChargerState:
    mode: Mode = "pv"
    target_wh: float | None = None
    until_us: int | None = None
    charged_wh: float = 0.0  # since the mode was set
    charging: bool = False
    phases: Literal[1, 3] = 3
    current_a: float = 0.0
    started_at: int | None = None
    enable_since: int | None = None  # surplus has covered the minimum since
    short_since: int | None = None  # while charging: surplus short of the current phases' minimum since
    up_since: int | None = None
    down_since: int | None = None
    switched_at: int | None = None  # the last 1p/3p switch
    slow: float | None = None  # the surplus left to it: up at once with the average, down over the stop window
    unused_since: int | None = None  # its own meter shows it drawing clearly less than allowed since
    reason: str = ""

    def set_mode(self, mode: Mode, target_wh: float | None, until_us: int | None) -> None:
        self.mode, self.target_wh, self.until_us, self.charged_wh = mode, target_wh, until_us, 0.0
        self.enable_since = self.short_since = self.up_since = self.down_since = None

    def power(self, lp: Loadpoint) -> float:
        return lp.power(self.phases, self.current_a) if self.charging else 0.0

    def _start(self, now: int, phases: Literal[1, 3], current: float) -> None:
        self.charging, self.started_at, self.phases, self.current_a = True, now, phases, current
        self.enable_since = self.short_since = None

    def _stop(self) -> None:
        self.charging, self.current_a, self.started_at = False, 0.0, None
        self.short_since = self.up_since = self.down_since = None


def decide(lp: Loadpoint, st: ChargerState, t: Timing, now: int, left: Available, gate: Gate) -> None:
    """Decide for one charger at one grid reading from the surplus left to it. Sets `st.reason`."""
    st.slow = _slow(st.slow, left, t.stop_window)
    if lp.phases != "auto":
        st.phases = lp.phases  # also when the meters file changed it
    if st.mode == "now" and ((st.target_wh is not None and st.charged_wh >= st.target_wh)
                             or (st.until_us is not None and now >= st.until_us)):
        st.set_mode("pv", None, None)
        st.reason = "target reached, back to pv: "
    else:
        st.reason = ""
    if st.mode == "off":
        if st.charging:
            st._stop()
        st.reason += "off"
    elif st.mode == "now":
        if st.charging and st.phases != lp.highest:
            st.switched_at = now
        st._start(st.started_at or now, lp.highest, lp.max_current_a)
        st.reason += f"now: {st.phases}p {st.current_a:.0f} A"
    elif st.mode == "minpv" or st.charging:
        st.reason += _charging(lp, st, t, now, left, gate)
    else:
        st.reason += _waiting(lp, st, t, now, left, gate)


def _waiting(lp: Loadpoint, st: ChargerState, t: Timing, now: int, left: Available, gate: Gate) -> str:
    """Not charging, `pv`: start when the surplus at every reading for the enable delay has covered the
    minimum and the start margin (not its average: a spike the average still carries starts nothing)."""
    surplus, minimum = left.now, lp.power(lp.lowest, lp.min_current_a)
    if not gate.start:
        if surplus < minimum + t.start_margin_w:
            st.enable_since = None
            return f"surplus {surplus:.0f} W below the {minimum:.0f} W minimum + {t.start_margin_w:.0f} W"
    if st.enable_since is None:
        st.enable_since = now
    waited = (now - st.enable_since) / 1e6
    if waited < t.enable:
        return f"surplus {surplus:.0f} W covers {minimum:.0f} W for {waited:.0f} s of {t.enable:.0f} s"
    if not gate.may_start:
        return "start held: another charger of the site started or stopped within the delay"
    if gate.start:
        st._start(now, lp.lowest, lp.min_current_a)
        return "start from the battery (above its start SoC)"
    phases: Literal[1, 3] = (3 if surplus >= lp.power(3, lp.min_current_a) else 1) if lp.phases == "auto" \
        else lp.phases
    st._start(now, phases, lp.fit(phases, surplus))
    return f"start: surplus covered {minimum:.0f} W for {t.enable:.0f} s, now {surplus:.0f} W"


def _charging(lp: Loadpoint, st: ChargerState, t: Timing, now: int, left: Available, gate: Gate) -> str:
    usable, momentary, slow = left.average, left.now, st.slow or 0.0
    if not st.charging:  # minpv starts at once
        st._start(now, lp.lowest, lp.min_current_a)
    minpv = st.mode == "minpv"
    switched = _switch_phases(lp, st, t, now, usable, minpv) if lp.phases == "auto" else None
    need = lp.power(st.phases, lp.min_current_a)
    st.current_a = lp.fit(st.phases, momentary)  # the current follows the surplus at each reading
    if usable >= need:
        st.short_since = None
        return switched or f"surplus {usable:.0f} W: {st.phases}p {st.current_a:.0f} A"
    if minpv:
        return switched or f"minpv: {st.phases}p {st.current_a:.0f} A, surplus {usable:.0f} W"
    if gate.hold:
        st.short_since = None
        return switched or f"held at {st.current_a:.0f} A from the battery (above its buffer SoC)"
    if st.short_since is None:
        st.short_since = now
    short = (now - st.short_since) / 1e6
    charged = (now - (st.started_at or now)) / 1e6
    if short >= t.disable and charged >= t.min_charge and slow < need and gate.may_stop:
        st._stop()
        return f"stop: surplus {usable:.0f} W short of {need:.0f} W for {t.disable:.0f} s"
    if short >= t.disable and charged < t.min_charge:
        return switched or f"surplus {usable:.0f} W short of {need:.0f} W: minimum charge time, " \
                           f"{charged:.0f} s of {t.min_charge:.0f} s"
    if short >= t.disable and slow < need:
        return switched or "stop held: another charger of the site started or stopped within the delay"
    if short >= t.disable:
        return switched or f"surplus {usable:.0f} W short of {need:.0f} W, over {t.stop_window:.0f} s " \
                           f"{slow:.0f} W: riding it out"
    return switched or f"surplus {usable:.0f} W short of {need:.0f} W for {short:.0f} s of {t.disable:.0f} s"


def _slow(slow: float | None, left: Available, window_s: float) -> float:
    """OpenEVSE's asymmetric smoothing with an instant attack: up at once with the window's average,
    down towards the surplus at this reading with the stop window as time constant."""
    if slow is None or not window_s:
        return left.average
    decayed = slow + (left.now - slow) * -math.expm1(-left.elapsed_us / 1e6 / window_s)
    return max(decayed, left.average)


def _switch_phases(lp: Loadpoint, st: ChargerState, t: Timing, now: int, usable: float, minpv: bool) -> str | None:
    """Up is a choice: its own delay, a margin, and not within the switch interval of the last switch.
    Down is a need (three phases at minimum draw more than the surplus): only its delay — in `pv` not
    below one phase's minimum either (then the charger stops instead)."""
    def since(start: int) -> float:
        return (now - start) / 1e6

    three_min = lp.power(3, lp.min_current_a)
    if st.phases == 1:
        st.down_since = None
        if usable < max(three_min + t.phase_up_margin_w, lp.power(1, lp.max_current_a)):
            st.up_since = None
            return None
        if st.up_since is None:
            st.up_since = now
        if since(st.up_since) < t.phase_up or (
                st.switched_at is not None and since(st.switched_at) < t.phase_interval):
            return None
        st.phases, st.switched_at, st.up_since, st.short_since = 3, now, None, None
        return f"switch to 3 phases: surplus {usable:.0f} W for {t.phase_up:.0f} s"
    st.up_since = None
    if usable >= three_min:
        st.down_since = None
        return None
    if st.down_since is None:
        st.down_since = now
    if since(st.down_since) < t.phase_down or (not minpv and usable < lp.power(1, lp.min_current_a)):
        return None
    st.phases, st.switched_at, st.down_since, st.short_since = 1, now, None, None
    return f"switch to 1 phase: surplus {usable:.0f} W short of {three_min:.0f} W for {t.phase_down:.0f} s"
