"""Plausibility of readings: values that cannot be physically true never reach the sinks as if true.

Pure, like `windows`: one meter's reading and its small state (`Plausibility`, JSON in a table) in, a
reason or None out; the only clock is the readings' event time. The rules, with their limits and why
each is what it is, are in docs/architecture.md, "Nothing implausible"; here they are numbered:

0. Time: a reading stamped more than `windows.MAX_CLOCK_AHEAD` after it arrived.
1. Ranges, in every scope (`total`, `L1`..`L3`): finite numbers, voltage, frequency, power factor,
   current and power within the meter's `Limits`, registers 0..2**63-1, and when 0 V and 0 Hz mean
   "no supply on this phase".
2. Registers against the last accepted value of the same scope and field: never backwards, never up by
   more than the meter could count (`max_power_w` x the event time between + `register_slack_wh`).
3. A replaced meter or a reset counter: readings that fail rule 2 against the accepted series but agree
   with each other form a candidate series, accepted after `REPLACEMENT_READINGS` readings spanning
   `REPLACEMENT_SECONDS`.
Only accepted readings change the accepted series; a reading failing rule 1 changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pipeline.logic.windows import MAX_CLOCK_AHEAD
from pipeline.models import MAX_INTEGER, SOC, Reading, Values, format_ts, to_us

REPLACEMENT_READINGS = 3
REPLACEMENT_SECONDS = 60
REGISTERS = ("energy_import_wh", "energy_export_wh", "reactive_energy_import_varh", "reactive_energy_export_varh")
UNITS = {"voltage_v": "V", "current_a": "A", "power_w": "W", "apparent_power_va": "VA", "reactive_power_var": "var",
         "frequency_hz": "Hz", "energy_import_wh": "Wh", "energy_export_wh": "Wh",
         "reactive_energy_import_varh": "varh", "reactive_energy_export_varh": "varh"}
VOLTAGE_V = (50.0, 1000.0)
FREQUENCY_HZ = (45.0, 65.0)
PF_EPSILON = 1e-6  # meters round the power factor; 1.0000001 is still 1
# What a phase without voltage may still show: measurement noise of an idle current transformer.
DEAD_CURRENT_A = 0.05
DEAD_POWER = 1.0  # W, VA, var
Register = tuple[int, int]  # (value, event time in µs) of one `scope.field`


@dataclass(frozen=True)
class Limits:
    """One meter's physical limits (from its meters-file entry: `pipeline.meters_file.Meter.limits`; a
    meter the file does not list gets `Limits()`)."""

    max_power_w: float = 50_000.0  # about a 3 x 63 A household connection, with margin
    max_current_a: float = 100.0
    register_slack_wh: int = 1000


@dataclass
class Candidate:
    """The readings that may be a replaced meter's new series: how many, their event-time span, registers."""

    count: int
    first_us: int
    last_us: int
    registers: dict[str, Register]


@dataclass
class Plausibility:
    """One meter's accepted registers (`scope.field` → last accepted value and time) and candidate series."""

    registers: dict[str, Register] = field(default_factory=dict)
    candidate: Candidate | None = None

    def dump(self) -> dict[str, Any]:
        data: dict[str, Any] = {"r": {key: list(register) for key, register in self.registers.items()}}
        if self.candidate is not None:
            c = self.candidate
            data["c"] = [c.count, c.first_us, c.last_us, {key: list(reg) for key, reg in c.registers.items()}]
        return data

    @classmethod
    def load(cls, data: dict[str, Any]) -> Plausibility:
        candidate = None
        if "c" in data:
            count, first_us, last_us, registers = data["c"]
            candidate = Candidate(count, first_us, last_us, {key: (v, ts) for key, (v, ts) in registers.items()})
        return cls({key: (v, ts) for key, (v, ts) in data["r"].items()}, candidate)


def check(state: Plausibility, reading: Reading, limits: Limits = Limits()) -> str | None:
    """None: plausible (state updated). Otherwise the reason: which `scope.field`, the value and why."""
    if reading.ts - reading.received_at > MAX_CLOCK_AHEAD:
        return (f"ts {format_ts(reading.ts)} is more than {MAX_CLOCK_AHEAD} after it arrived "
                f"({format_ts(reading.received_at)}): the meter's clock is wrong")
    problem = _range_problem(reading, limits)
    if problem is not None:
        return problem
    ts_us = to_us(reading.ts)
    registers = {f"{scope}.{name}": value for scope, values in reading.scopes()
                 for name in REGISTERS if (value := getattr(values, name)) is not None}
    problem = _series_problem(registers, ts_us, state.registers, limits)
    if problem is None:
        if _advance(state.registers, registers, ts_us):
            state.candidate = None
        return None

    candidate = state.candidate
    if candidate is None or _series_problem(registers, ts_us, candidate.registers, limits) is not None:
        candidate = state.candidate = Candidate(0, ts_us, ts_us, {})
    candidate.count += 1
    candidate.first_us, candidate.last_us = min(candidate.first_us, ts_us), max(candidate.last_us, ts_us)
    _advance(candidate.registers, registers, ts_us)
    seconds = (candidate.last_us - candidate.first_us) / 1e6
    if candidate.count >= REPLACEMENT_READINGS and seconds >= REPLACEMENT_SECONDS:
        state.registers.update(candidate.registers)
        state.candidate = None
        return None
    if candidate.count < REPLACEMENT_READINGS:
        return f"{problem} ({candidate.count} of {REPLACEMENT_READINGS} readings to accept as a replaced meter)"
    return (f"{problem} ({candidate.count} readings over {seconds:g} of {REPLACEMENT_SECONDS} s "
            "to accept as a replaced meter)")


def _advance(series: dict[str, Register], registers: dict[str, int], ts_us: int) -> bool:
    """Take the registers into `series` where they are not older; whether a known register moved on."""
    moved = False
    for key, value in registers.items():
        last = series.get(key)
        if last is None or ts_us >= last[1]:
            moved |= last is not None
            series[key] = (value, ts_us)
    return moved


def _series_problem(registers: dict[str, int], ts_us: int, series: dict[str, Register], limits: Limits) -> str | None:
    for key, value in registers.items():
        if key not in series:
            continue  # a first value: nothing to compare with
        last, last_us = series[key]
        unit = UNITS[key.split(".", 1)[1]]
        seconds = abs(ts_us - last_us) / 1e6
        # What the meter can count in that time at its largest power, plus its counting step.
        most = limits.max_power_w * seconds / 3600 + limits.register_slack_wh if seconds else limits.register_slack_wh
        if ts_us >= last_us:
            if value < last:
                return f"{key} went back from {last} to {value} {unit}"
            if value - last > most:
                return (f"{key} rose from {last} to {value} {unit} in {seconds:g} s "
                        f"(at most {most:.0f} {unit} at {limits.max_power_w:g} W)")
        elif value > last:
            return f"{key} {value} {unit} is above {last} {unit} of a reading {seconds:g} s later"
        elif last - value > most:
            return (f"{key} {value} {unit} is more than {most:.0f} {unit} below {last} {unit} "
                    f"of a reading {seconds:g} s later")
    return None


def _range_problem(reading: Reading, limits: Limits) -> str | None:
    for name, number in reading.extra.items():
        if not math.isfinite(number):
            return f"extra.{name} {number} is not a finite number"
    soc = reading.extra.get(SOC)
    if soc is not None and not 0 <= soc <= 100:
        return f"extra.{SOC} {soc} % is no state of charge (0..100 %)"
    live = any((values.voltage_v or 0.0) > 0 for _, values in reading.scopes())
    for scope, values in reading.scopes():
        problem = _scope_problem(scope, values, live, limits)
        if problem is not None:
            return problem
    return None


def _scope_problem(scope: str, values: Values, live: bool, limits: Limits) -> str | None:
    present = values.present()
    for name, value in present.items():
        if isinstance(value, float) and not math.isfinite(value):
            return f"{scope}.{name} {value} is not a finite number"
    voltage, frequency = values.voltage_v, values.frequency_hz
    if voltage == 0.0:
        if (carried := _carried(values)) is not None:
            return f"{scope}.voltage_v 0.0 V but {carried} (a phase without voltage carries nothing)"
    elif voltage is not None and not VOLTAGE_V[0] <= voltage <= VOLTAGE_V[1]:
        return f"{scope}.voltage_v {voltage} V is outside {VOLTAGE_V[0]:g}..{VOLTAGE_V[1]:g} V"
    if frequency == 0.0:
        if (live if voltage is None else voltage > 0):
            return f"{scope}.frequency_hz 0.0 Hz while the meter measures a voltage"
        if (carried := _carried(values)) is not None:
            return f"{scope}.frequency_hz 0.0 Hz but {carried} (without supply nothing flows)"
    elif frequency is not None and not FREQUENCY_HZ[0] <= frequency <= FREQUENCY_HZ[1]:
        return f"{scope}.frequency_hz {frequency} Hz is outside {FREQUENCY_HZ[0]:g}..{FREQUENCY_HZ[1]:g} Hz"
    if values.power_factor is not None and abs(values.power_factor) > 1 + PF_EPSILON:
        return f"{scope}.power_factor {values.power_factor} is outside -1..1"
    bounds = {"current_a": limits.max_current_a, "power_w": limits.max_power_w,
              "apparent_power_va": limits.max_power_w, "reactive_power_var": limits.max_power_w}
    for name, bound in bounds.items():
        if name in present and abs(present[name]) > bound:
            return f"{scope}.{name} {present[name]} {UNITS[name]} is beyond ±{bound:g} {UNITS[name]}"
    for name in REGISTERS:
        if name in present and not 0 <= present[name] <= MAX_INTEGER:
            return f"{scope}.{name} {present[name]} {UNITS[name]} is outside 0..{MAX_INTEGER} {UNITS[name]}"
    return None


def _carried(values: Values) -> str | None:
    """The current or power a scope without supply shows beyond noise, as text; None if it shows none."""
    for name, bound in (("current_a", DEAD_CURRENT_A), ("power_w", DEAD_POWER),
                        ("apparent_power_va", DEAD_POWER), ("reactive_power_var", DEAD_POWER)):
        value = getattr(values, name)
        if value is not None and abs(value) > bound:
            return f"{name} {value} {UNITS[name]}"
    return None
