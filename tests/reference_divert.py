"""The reference the surplus controller is measured against: a solar divert controller built from
OpenEVSE's published algorithm (its ESP32 firmware's `divert.cpp`, "Eco" mode on a grid feed), written
here from its description, as a `backtest` controller on the same closed loop as ours.

At each grid value: available current = the car's current minus the grid power (import +) over the
voltage, minus a reserve of (PV ratio - 1) kW; it is smoothed by a first-order filter with one time
constant rising (attack, 20 s) and another falling (decay, 600 s). Charging starts when the smoothed
current reaches the trigger (min current x min(1, PV ratio)) plus a hysteresis of 0.5 A and stops when it
falls to the trigger, but not within the minimum charge time (600 s) after a start; the current set is the
unsmoothed available current rounded down, within [min, max]. One phase, no battery rules, no modes.

`python -m tests.reference_divert [DAY ...]` prints the comparison table of docs/charging.md."""

from __future__ import annotations

import functools
import gzip
import math
import sys
from dataclasses import dataclass, field

from pipeline.backtest import Backtest, SimBattery, Summary, read_records
from pipeline.logic.surplus import Role, SiteState, on_reading, power_of
from pipeline.meters_file import Meter, MetersFile
from pipeline.models import ChargerDecision, Reading, SurplusSignal
from pipeline.sites import Site
from tests.profiles import PROFILES

ATTACK_S, DECAY_S, PV_RATIO, MIN_CHARGE_S, HYSTERESIS_A = 20.0, 600.0, 1.1, 600.0, 0.5


@dataclass
class Divert:
    smoothed_a: float = 0.0
    charging: bool = False
    current_a: float = 0.0
    min_charge_end: float = 0.0
    last_s: float | None = None
    draw_w: float = 0.0  # the charger's meter
    battery_w: float | None = None  # the battery's meter (not used to decide: for the summary)


@dataclass
class Reference:
    """A `backtest` controller: OpenEVSE's divert per site, on its site's first charger's limits."""

    states: dict[str, Divert] = field(default_factory=dict)

    def __call__(self, site: Site, _state: SiteState, reading: Reading, role: Role) -> SurplusSignal | None:
        st = self.states.setdefault(site.name, Divert())
        power = power_of(reading) or 0.0
        if role == "charger":
            st.draw_w = power
        if role == "battery":
            st.battery_w = power
        if role != "grid":
            return None
        lp, now = site.chargers[0], reading.ts.timestamp()
        voltage = lp.voltage_v
        available = max(st.draw_w / voltage - power / voltage - 1000 * (PV_RATIO - 1) / voltage, 0.0)
        if st.last_s is not None:
            tau = ATTACK_S if available > st.smoothed_a else DECAY_S
            st.smoothed_a += (available - st.smoothed_a) * (1 - math.exp(-(now - st.last_s) / tau))
        st.last_s = now
        trigger = lp.min_current_a * min(1.0, PV_RATIO)
        if st.smoothed_a >= trigger + HYSTERESIS_A:
            if not st.charging:
                st.charging, st.min_charge_end = True, now + MIN_CHARGE_S
        elif st.smoothed_a <= trigger and st.charging and now >= st.min_charge_end:
            st.charging = False
        st.current_a = float(min(max(math.floor(available), lp.min_current_a), lp.max_current_a))
        power_w = voltage * st.current_a if st.charging else 0.0
        decision = ChargerDecision(charge=st.charging, phases=1, current_a=st.current_a if st.charging else 0.0,
                                   power_w=power_w, mode="pv", reason=f"smoothed {st.smoothed_a:.1f} A")
        return SurplusSignal(site=site.name, ts=reading.ts, grid_w=power, charger_w=st.draw_w,
                             battery_w=st.battery_w,
                             surplus_w=round(available * voltage, 1), charge=st.charging, phases=1,
                             current_a=decision.current_a, power_w=power_w, reason=decision.reason,
                             chargers={lp.name: decision})


# A single-phase charger of 6-32 A, the reference's setting; ours with the same limits and its defaults.
SITE = Site(phases=1, min_current_a=6, max_current_a=32)
METERS_FILE = MetersFile(meter=(Meter(driver="iammeter", device="GRID", role="grid"),
                                Meter(driver="iammeter", device="PV", role="pv")), site=(SITE,))


@functools.cache
def day(name: str, reference: bool, battery: bool) -> Summary:
    backtest = Backtest(METERS_FILE, simulate_charger=True, battery=SimBattery() if battery else None,
                        controller=Reference() if reference else on_reading)
    errors: list[str] = []
    with gzip.open(PROFILES / f"{name}.jsonl.gz") as source:
        for _ in backtest.run(read_records(source, errors), "surplus"):
            pass
    assert not errors
    return backtest.summaries[SITE.name]


def row(name: str, summary: Summary) -> str:
    sessions = summary.chargers["charger"]
    return (f"| {name} | {summary.from_surplus_wh / 1000:.1f} | {summary.from_battery_wh / 1000:.1f} | "
            f"{summary.from_grid_wh / 1000:.1f} | {sessions.starts} | {sessions.short} |")


def table(days: list[str]) -> list[str]:
    """The table of docs/charging.md: each day without and with a battery, ours and the reference's."""
    lines = ["| day | kWh from surplus | from the battery | from the grid | starts | sessions < 10 min |",
             "|---|---|---|---|---|---|"]
    for name in days:
        for battery in (False, True):
            label = f"{name}{' + battery' if battery else ''}"
            lines += [row(f"{label}, wattstream", day(name, False, battery)),
                      row(f"{label}, reference", day(name, True, battery))]
    return lines


DAYS = ["clear", "clouds", "loads"]

if __name__ == "__main__":
    print("\n".join(table(sys.argv[1:] or DAYS)))
