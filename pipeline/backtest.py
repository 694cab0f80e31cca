"""`wattstream backtest`: the agents' pure logic run offline over a file of `Reading`s, so users can tune
their site settings on their own recorded days (and the tests replay days the same way).

Records are taken in file order, as the agents take them from `meter.readings`; a line that is a
`ModeCommand` (`{"site", "charger", "mode", ..., "at"}`) sets a charger's mode there, as one set over MQTT
would. `--simulate-charger` closes the loop for a day recorded without a car: each site's chargers draw
what the last decision allowed, seen by its grid meter (grid + draw) and by a charger meter of its own.
`--simulate-battery` adds a house battery where the day has none (`SimBattery`: it charges from export
and discharges into import, as a battery's own controller does), seen by the grid meter and by a battery
meter sending its state of charge.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, ValidationError

from pipeline.logic.surplus import MAX_GAP_US, NO_FEED, Role, SiteState, on_command, on_reading, power_of
from pipeline.logic.windows import MeterState, WindowConfig, step
from pipeline.meters_file import MetersFile
from pipeline.models import SOC, ModeCommand, Reading, SurplusSignal, Values, to_us
from pipeline.sites import Site

Emit = Literal["debounce", "averages", "surplus"]
Controller = Callable[[Site, SiteState, Reading, Role], SurplusSignal | None]
MAX_GAP_S = MAX_GAP_US / 1e6  # a longer gap between two decisions is not counted as charging time
SHORT_S = 600.0  # a charging session shorter than this is counted as short


@dataclass
class Sessions:
    """One charger's sessions over a day."""

    starts: int = 0
    stops: int = 0
    short: int = 0  # sessions shorter than SHORT_S
    phase_switches: int = 0
    charged_wh: float = 0.0
    _since: float | None = None  # start of the running session (s)

    def add(self, last: SurplusSignal, signal: SurplusSignal, name: str, hours: float) -> None:
        before, now = last.chargers.get(name), signal.chargers.get(name)
        was, on = bool(before and before.charge), bool(now and now.charge)
        t = signal.ts.timestamp()
        if on and not was:
            self.starts, self._since = self.starts + 1, t
        if was and not on:
            self.stops += 1
            self.short += self._since is not None and t - self._since < SHORT_S
            self._since = None
        self.phase_switches += bool(before and now and was and on and before.phases != now.phases)
        self.charged_wh += (before.power_w if before else 0.0) * hours


@dataclass
class Summary:
    """What a day of decisions meant for one site: where the chargers' energy came from (at each grid
    reading, PV beyond the house's own use first, then the battery, then the grid) and each charger's
    sessions."""

    site: str
    decisions: int = 0
    from_surplus_wh: float = 0.0
    from_battery_wh: float = 0.0
    from_grid_wh: float = 0.0
    chargers: dict[str, Sessions] = field(default_factory=dict)
    _last: SurplusSignal | None = field(default=None, repr=False)

    def add(self, signal: SurplusSignal) -> None:
        last, self._last = self._last, signal
        self.decisions += 1
        if last is None:
            return
        hours = min((signal.ts - last.ts).total_seconds(), MAX_GAP_S) / 3600
        for name in signal.chargers:
            self.chargers.setdefault(name, Sessions()).add(last, signal, name, hours)
        battery = last.battery_w or 0.0
        draw = last.charger_w
        pv = min(draw, max(draw + battery - last.grid_w, 0.0))  # PV beyond the house = car + battery - grid
        from_battery = min(draw - pv, max(-battery, 0.0))
        self.from_surplus_wh += pv * hours
        self.from_battery_wh += from_battery * hours
        self.from_grid_wh += (draw - pv - from_battery) * hours

    @property
    def starts(self) -> int:
        return sum(s.starts for s in self.chargers.values())

    @property
    def phase_switches(self) -> int:
        return sum(s.phase_switches for s in self.chargers.values())

    def line(self) -> str:
        chargers = "; ".join(f"charger {name}: {s.starts} starts, {s.stops} stops, {s.short} sessions under "
                             f"{SHORT_S / 60:.0f} min, {s.phase_switches} phase switches, {s.charged_wh / 1000:.2f} kWh"
                             for name, s in sorted(self.chargers.items()))
        return (f"site {self.site}: {self.decisions} decisions, {self.starts} starts, {self.phase_switches} phase "
                f"switches, charged {self.from_surplus_wh / 1000:.2f} kWh from surplus, "
                f"{self.from_battery_wh / 1000:.2f} kWh from the battery and {self.from_grid_wh / 1000:.2f} kWh "
                f"from the grid; {chargers}")


@dataclass
class SimBattery:
    """A house battery run by its own zero-export controller: it charges from what would be exported and
    discharges into what would be imported, within its power and capacity."""

    capacity_wh: float = 10_000.0
    max_w: float = 5_000.0
    soc: float = 20.0  # % at the start of the day
    _at: float | None = None

    def step(self, net_w: float, at: float) -> float:
        """The battery's power (+ charging) for a site that would draw `net_w` from the grid."""
        hours = 0.0 if self._at is None else min(at - self._at, MAX_GAP_S) / 3600
        self._at = at
        stored = self.capacity_wh * self.soc / 100
        if net_w < 0:
            power = min(-net_w, self.max_w, (self.capacity_wh - stored) / hours if hours else self.max_w)
        else:
            power = -min(net_w, self.max_w, stored / hours if hours else self.max_w)
        self.soc = min(max((stored + power * hours) / self.capacity_wh * 100, 0.0), 100.0)
        return power


@dataclass
class Backtest:
    meters_file: MetersFile
    windows: WindowConfig = field(default_factory=WindowConfig)
    simulate_charger: bool = False
    battery: SimBattery | None = None  # simulated for each site (a copy each)
    controller: Controller = on_reading
    meters: dict[str, MeterState] = field(default_factory=dict)
    sites: dict[str, SiteState] = field(default_factory=dict)
    summaries: dict[str, Summary] = field(default_factory=dict)
    _draw: dict[str, float] = field(default_factory=dict)  # simulated charger draw per site
    _batteries: dict[str, SimBattery] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._feeds = self.meters_file.feeds()
        self._site_settings = self.meters_file.sites()

    def run(self, records: Iterable[Reading | ModeCommand], emit: Emit) -> Iterator[BaseModel]:
        for record in records:
            if isinstance(record, ModeCommand):
                site = self._site_settings.get(record.site)
                if site is None:
                    raise ValueError(f"mode command for site {record.site!r}, which the meters file does not have")
                on_command(site, self.sites.setdefault(site.name, SiteState()), record)
            elif emit == "surplus":
                yield from self._surplus(record)
            else:
                result = step(self.meters.setdefault(record.meter_id, MeterState()), record, self.windows)
                if emit == "debounce" and result.debounced:
                    yield record
                elif emit == "averages":
                    yield from result.averages

    def _surplus(self, reading: Reading) -> Iterator[SurplusSignal]:
        site_name, role = self._feeds.get(reading.meter_id, NO_FEED)
        site = self._site_settings.get(site_name)
        if site is None:
            return
        state = self.sites.setdefault(site_name, SiteState())
        if role == "grid":
            reading = self._simulated(site, state, reading)
        signal = self.controller(site, state, reading, role)
        if signal is None:
            return
        self._draw[site_name] = signal.power_w
        self.summaries.setdefault(site_name, Summary(site_name)).add(signal)
        yield signal

    def _simulated(self, site: Site, state: SiteState, grid: Reading) -> Reading:
        """The grid reading as the simulated charger and battery change it; their own meters' readings
        go to the controller first."""
        power = power_of(grid) or 0.0
        if self.simulate_charger:
            draw = self._draw.get(site.name, 0.0)
            self.controller(site, state, _meter(grid, f"simulated:charger-{site.name}", draw, {}), "charger")
            power += draw
        if self.battery is not None:
            battery = self._batteries.setdefault(site.name, replace(self.battery))  # a fresh one per site
            charge = battery.step(power, to_us(grid.ts) / 1e6)
            self.controller(site, state, _meter(grid, f"simulated:battery-{site.name}", charge,
                                                {SOC: round(battery.soc, 1)}), "battery")
            power += charge
        if not self.simulate_charger and self.battery is None:
            return grid
        return grid.model_copy(update={"total": Values(power_w=power), "phases": {}})

    def open_windows(self) -> int:
        return sum(len(state.windows) for state in self.meters.values())


def _meter(grid: Reading, meter_id: str, power: float, extra: dict[str, float]) -> Reading:
    return grid.model_copy(update={"meter_id": meter_id, "driver": "simulated", "total": Values(power_w=power),
                                   "phases": {}, "extra": extra})


def read_records(source: IO[bytes], errors: list[str]) -> Iterator[Reading | ModeCommand]:
    """`Reading` JSON lines, and `ModeCommand`s among them; a bad line is noted in `errors` (with its
    number) and skipped."""
    for number, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            yield Reading.from_json(line)
        except ValidationError as exc:
            try:
                yield ModeCommand.from_json(line)
            except ValidationError:
                errors.append(f"line {number}: not a Reading: {exc.errors()[0]['msg']}")


def open_input(path: str | None) -> IO[bytes]:
    """A path (`.gz` is decompressed) or stdin."""
    if path is None or path == "-":
        return sys.stdin.buffer
    return gzip.open(path) if path.endswith(".gz") else Path(path).open("rb")  # type: ignore[return-value]
