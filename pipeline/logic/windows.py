"""Per-meter stream logic: the 5-minute debounce and the 10-minute event-time averages.

Both are pure functions of a meter's readings and their event times, with the state passed in and out
(`MeterState`, JSON in a changelogged table), so a restarted worker, a second worker and `wattstream
backtest` all compute the same thing. No wall clock here: a window closes when the meter's own
event-time watermark (the latest `ts` seen) passes its end plus the grace period.

Times are integer microseconds since the epoch inside the state (exact, cheap to compare and store).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pipeline.models import Average, Reading, Stats, from_us, to_us

CUMULATIVE = frozenset({"energy_import_wh", "energy_export_wh",
                        "reactive_energy_import_varh", "reactive_energy_export_varh"})
# A reading stamped this far after its arrival has a broken clock: it would push the watermark ahead
# and make every later reading of the meter late, so it is kept out of windows and debounce (counted).
MAX_CLOCK_AHEAD = timedelta(minutes=5)


@dataclass(frozen=True)
class WindowConfig:
    debounce_us: int = 300_000_000  # 5 min buckets
    window_us: int = 600_000_000  # 10 min windows
    grace_us: int = 60_000_000  # a window closes when the watermark passes end + grace


class FieldAcc:
    """Count, exact sum, min, max and the first/last value by event time of one field.

    The sum is kept exactly as `k / 2**shift` (every float is a dyadic rational), so the mean is the
    exact mean rounded once, independent of the order of the values and equal to `statistics.mean`.
    """

    __slots__ = ("count", "first", "first_us", "high", "k", "last", "last_us", "low", "shift")

    def __init__(self, values: list[Any] | None = None) -> None:
        if values is None:
            self.count, self.k, self.shift = 0, 0, 0
            self.low = self.high = self.first = self.last = 0.0
            self.first_us = self.last_us = 0
        else:
            (self.count, self.k, self.shift, self.low, self.high,
             self.first_us, self.first, self.last_us, self.last) = values

    def add(self, value: float | int, ts_us: int) -> None:
        numerator, denominator = value.as_integer_ratio()
        shift = denominator.bit_length() - 1  # the denominator is a power of two
        mine = self.shift
        if shift > mine:
            self.k = (self.k << (shift - mine)) + numerator
            self.shift = shift
        else:
            self.k += numerator << (mine - shift)
        if self.count:
            if value < self.low:
                self.low = value
            elif value > self.high:
                self.high = value
            if ts_us < self.first_us:
                self.first_us, self.first = ts_us, value
            if ts_us >= self.last_us:
                self.last_us, self.last = ts_us, value
        else:
            self.low = self.high = self.first = self.last = value
            self.first_us = self.last_us = ts_us
        self.count += 1

    def stats(self, cumulative: bool) -> Stats:
        delta = int(self.last - self.first) if cumulative else None
        return Stats(mean=self.k / (self.count << self.shift), min=self.low, max=self.high,
                     count=self.count, delta=delta)

    def dump(self) -> list[Any]:
        return [self.count, self.k, self.shift, self.low, self.high,
                self.first_us, self.first, self.last_us, self.last]


@dataclass
class WindowAcc:
    """One meter's open window: the number of readings and a `FieldAcc` per `scope.field`."""

    count: int = 0
    fields: dict[str, FieldAcc] = field(default_factory=dict)

    def add(self, reading: Reading, ts_us: int) -> None:
        self.count += 1
        for scope, values in reading.scopes():
            self._add(scope, values.present(), ts_us)
        self._add("extra", reading.extra, ts_us)

    def _add(self, scope: str, values: dict[str, float | int] | dict[str, float], ts_us: int) -> None:
        fields = self.fields
        for name, value in values.items():
            key = f"{scope}.{name}"
            acc = fields.get(key)
            if acc is None:
                acc = fields[key] = FieldAcc()
            acc.add(value, ts_us)

    def average(self, meter_id: str, driver: str, start_us: int, end_us: int) -> Average:
        scopes: dict[str, dict[str, Stats]] = {}
        for key, acc in sorted(self.fields.items()):
            scope, name = key.split(".", 1)
            scopes.setdefault(scope, {})[name] = acc.stats(name in CUMULATIVE and scope != "extra")
        phases = {phase: scopes[phase] for phase in ("L1", "L2", "L3") if phase in scopes}
        return Average(meter_id=meter_id, driver=driver, start=from_us(start_us), end=from_us(end_us),
                       count=self.count, total=scopes.get("total", {}), phases=phases,
                       extra=scopes.get("extra", {}))


@dataclass
class MeterState:
    """Everything the per-meter logic remembers between readings (one table entry per meter)."""

    driver: str = ""
    bucket_us: int | None = None  # start of the last 5-minute bucket that let a reading through
    watermark_us: int | None = None  # the latest event time seen
    closed_until_us: int | None = None  # every window ending at or before this has been emitted
    windows: dict[int, WindowAcc] = field(default_factory=dict)  # open windows by start
    late: int = 0  # readings left out of an average because their window had closed
    ahead: int = 0  # readings left out because their clock was far ahead of their arrival

    def dump(self) -> dict[str, Any]:
        return {"driver": self.driver, "bucket": self.bucket_us,
                "watermark": self.watermark_us, "closed_until": self.closed_until_us,
                "late": self.late, "ahead": self.ahead,
                "windows": {str(start): {"count": acc.count,
                                         "fields": {k: f.dump() for k, f in acc.fields.items()}}
                            for start, acc in self.windows.items()}}

    @classmethod
    def load(cls, data: dict[str, Any]) -> MeterState:
        windows = {int(start): WindowAcc(w["count"], {k: FieldAcc(v) for k, v in w["fields"].items()})
                   for start, w in data["windows"].items()}
        return cls(driver=data["driver"], bucket_us=data["bucket"],
                   watermark_us=data["watermark"], closed_until_us=data["closed_until"], windows=windows,
                   late=data["late"], ahead=data["ahead"])


@dataclass(frozen=True)
class Step:
    debounced: bool  # the reading opens a new 5-minute bucket: it goes to `meter.readings.5m`
    averages: list[Average]  # the windows this reading's event time closed, oldest first
    late: bool  # the reading's window had closed already: left out of the average


def step(state: MeterState, reading: Reading, config: WindowConfig = WindowConfig()) -> Step:
    """Apply one reading to its meter's state (mutated in place)."""
    if reading.ts - reading.received_at > MAX_CLOCK_AHEAD:
        state.ahead += 1
        return Step(False, [], False)
    ts_us = to_us(reading.ts)
    state.driver = reading.driver

    bucket = ts_us - ts_us % config.debounce_us
    debounced = state.bucket_us is None or bucket > state.bucket_us
    if debounced:
        state.bucket_us = bucket

    start = ts_us - ts_us % config.window_us
    late = state.closed_until_us is not None and start + config.window_us <= state.closed_until_us
    if late:
        state.late += 1
    else:
        acc = state.windows.get(start)
        if acc is None:
            acc = state.windows[start] = WindowAcc()
        acc.add(reading, ts_us)
    if state.watermark_us is None or ts_us > state.watermark_us:
        state.watermark_us = ts_us

    closed = []
    for start in sorted(state.windows):
        end = start + config.window_us
        if end + config.grace_us > state.watermark_us:
            break
        closed.append(state.windows.pop(start).average(reading.meter_id, state.driver, start, end))
        state.closed_until_us = max(end, state.closed_until_us or end)
    return Step(debounced, closed, late)
