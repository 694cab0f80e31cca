"""`wattstream backtest`: the agents' pure logic run offline over a file of `Reading`s, so users can tune
their site settings on their own recorded days (and the tests replay days the same way).

Readings are taken in file order, as the agents take them from `meter.readings`. `--simulate-charger`
closes the loop for a day recorded without a car: each site gets a charger that draws what the last
decision allowed, seen by its grid meter (grid + draw) and by a charger meter of its own.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, ValidationError

from pipeline.logic.surplus import SiteState, on_reading
from pipeline.logic.windows import MeterState, WindowConfig, step
from pipeline.models import Reading, SurplusSignal, Values
from pipeline.settings import MetersFile, Site

Emit = Literal["debounce", "averages", "surplus"]
MAX_GAP_S = 300.0  # a longer gap between two decisions is not counted as charging time


@dataclass
class Summary:
    """What a day of decisions meant for one site."""

    site: str
    decisions: int = 0
    starts: int = 0
    stops: int = 0
    phase_switches: int = 0
    from_surplus_wh: float = 0.0  # charger energy covered by the surplus at that moment
    from_grid_wh: float = 0.0  # charger energy beyond the surplus, i.e. bought from the grid
    _last: SurplusSignal | None = field(default=None, repr=False)

    def add(self, signal: SurplusSignal) -> None:
        last, self._last = self._last, signal
        self.decisions += 1
        if last is None:
            return
        self.starts += signal.charge and not last.charge
        self.stops += last.charge and not signal.charge
        self.phase_switches += signal.charge and last.charge and signal.phases != last.phases
        hours = min((signal.ts - last.ts).total_seconds(), MAX_GAP_S) / 3600
        draw, available = last.charger_w, max(last.charger_w - last.grid_w, 0.0)
        self.from_surplus_wh += min(draw, available) * hours
        self.from_grid_wh += max(draw - available, 0.0) * hours

    def line(self) -> str:
        return (f"site {self.site}: {self.decisions} decisions, {self.starts} starts, {self.stops} stops, "
                f"{self.phase_switches} phase switches, charged {self.from_surplus_wh / 1000:.2f} kWh from "
                f"surplus and {self.from_grid_wh / 1000:.2f} kWh from the grid")


@dataclass
class Backtest:
    plant: MetersFile
    windows: WindowConfig = field(default_factory=WindowConfig)
    simulate_charger: bool = False
    meters: dict[str, MeterState] = field(default_factory=dict)
    sites: dict[str, SiteState] = field(default_factory=dict)
    summaries: dict[str, Summary] = field(default_factory=dict)
    _draw: dict[str, float] = field(default_factory=dict)  # simulated charger draw per site

    def __post_init__(self) -> None:
        self._roles = self.plant.roles()
        self._site_settings = self.plant.sites()

    def run(self, readings: Iterable[Reading], emit: Emit) -> Iterator[BaseModel]:
        for reading in readings:
            if emit == "surplus":
                yield from self._surplus(reading)
                continue
            result = step(self.meters.setdefault(reading.meter_id, MeterState()), reading, self.windows)
            if emit == "debounce" and result.debounced:
                yield reading
            elif emit == "averages":
                yield from result.averages

    def _surplus(self, reading: Reading) -> Iterator[SurplusSignal]:
        site_name, role = self._roles.get(reading.meter_id, ("", "other"))
        site = self._site_settings.get(site_name)
        if site is None:
            return
        state = self.sites.setdefault(site_name, SiteState())
        if self.simulate_charger and role == "grid":
            reading = self._with_charger(site, state, reading)
        signal = on_reading(site, state, reading, role)
        if signal is None:
            return
        self._draw[site_name] = signal.power_w
        self.summaries.setdefault(site_name, Summary(site_name)).add(signal)
        yield signal

    def _with_charger(self, site: Site, state: SiteState, grid: Reading) -> Reading:
        draw = self._draw.get(site.name, 0.0)
        charger = grid.model_copy(update={"meter_id": f"simulated:charger-{site.name}", "driver": "simulated",
                                          "total": Values(power_w=draw), "phases": {}, "extra": {}})
        on_reading(site, state, charger, "charger")
        power = (grid.total.power_w or 0.0) + draw
        return grid.model_copy(update={"total": Values(power_w=power), "phases": {}})

    def open_windows(self) -> int:
        return sum(len(state.windows) for state in self.meters.values())


def read_readings(source: IO[bytes], errors: list[str]) -> Iterator[Reading]:
    """`Reading` JSON lines; a bad line is noted in `errors` (with its number) and skipped."""
    for number, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            yield Reading.from_json(line)
        except ValidationError as exc:
            errors.append(f"line {number}: not a Reading: {exc.errors()[0]['msg']}")


def open_input(path: str | None) -> IO[bytes]:
    """A path (`.gz` is decompressed) or stdin."""
    if path is None or path == "-":
        return sys.stdin.buffer
    return gzip.open(path) if path.endswith(".gz") else Path(path).open("rb")  # type: ignore[return-value]
