"""The models, one definition each. Their JSON is the public format on Kafka.

SI units only; cumulative energies are exact integers (Wh, varh), never floats. Timestamps are
UTC-aware; on the wire they are ISO 8601 with a `Z` and millisecond precision where the value has it.
Unknown values are omitted from the JSON.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    model_validator,
)

from pipeline.errors import FrameError

MAX_INTEGER = 2**63 - 1  # cumulative counters are InfluxDB integer fields (int64)
Phase = Literal["L1", "L2", "L3"]
PHASES: tuple[Phase, ...] = ("L1", "L2", "L3")
SOC = "soc_pct"  # the `extra` value of a battery's state of charge (0..100 %)


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def format_ts(value: datetime) -> str:
    """ISO 8601 in UTC with `Z`; the fraction of a second only as fine as the value has it (ms or µs)."""
    value = value.astimezone(UTC)
    spec = "seconds" if not value.microsecond else "milliseconds" if not value.microsecond % 1000 else "microseconds"
    return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = timedelta(microseconds=1)


def to_us(ts: datetime) -> int:
    """Microseconds since the epoch: event times in state, windows and line protocol (exact, no float)."""
    return (ts - EPOCH) // US


def from_us(us: int) -> datetime:
    return EPOCH + us * US


UtcDatetime = Annotated[
    AwareDatetime, AfterValidator(_to_utc), PlainSerializer(format_ts, return_type=str)
]


class Values(BaseModel):
    """The electrical quantities of one scope: the meter's total or one phase."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    voltage_v: float | None = None
    current_a: float | None = None
    power_w: float | None = None  # signed: + import/consumption, - export
    power_factor: float | None = None
    frequency_hz: float | None = None
    reactive_power_var: float | None = None
    apparent_power_va: float | None = None
    energy_import_wh: int | None = None
    energy_export_wh: int | None = None
    reactive_energy_import_varh: int | None = None
    reactive_energy_export_varh: int | None = None

    def present(self) -> dict[str, float | int]:
        """The known values, by field name (from `__dict__`: the model has no extras or private
        attributes, and iterating the model costs a generator per call on the hot path)."""
        return {name: value for name, value in self.__dict__.items() if value is not None}


class Reading(BaseModel):
    """One normalised reading of one meter at one instant (event time `ts`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    meter_id: str  # "<driver>:<device id>"
    driver: str
    ts: UtcDatetime  # the meter's clock where it has one, else the bridge's receive time
    received_at: UtcDatetime
    total: Values = Values()
    # (factories: pydantic deep-copies a mutable default for every instance)
    phases: dict[Phase, Values] = Field(default_factory=dict)
    extra: dict[str, float] = Field(default_factory=dict)  # other numeric sensors, unit in the name (temperature_c)

    @classmethod
    def build(cls, fields: dict[str, Any]) -> Reading:
        """For decoders: a Reading from plain values; what pydantic refuses becomes a `FrameError`."""
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            error = exc.errors()[0]
            raise FrameError(f"{fields.get('driver')}: no valid Reading ({'.'.join(map(str, error['loc']))}: "
                             f"{error['msg']})") from exc

    def to_json(self) -> bytes:
        """The public wire format (`meter.readings`, `wattstream decode`)."""
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Reading:
        return cls.model_validate_json(data)

    def scopes(self) -> list[tuple[str, Values]]:
        """(`total` | `L1`..`L3`, values) for every scope this reading has."""
        return [("total", self.total), *self.phases.items()]


class Stats(BaseModel):
    """One field of one scope over one window. `mean` is the exact mean of the values, rounded once
    (what `statistics.mean` gives); `delta` is set for cumulative counters: last - first value in the
    window by event time (the energy of those minutes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mean: float
    min: float | int
    max: float | int
    count: int
    delta: int | None = None


class Average(BaseModel):
    """One meter over one closed event-time window [start, end)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    meter_id: str
    driver: str
    start: UtcDatetime
    end: UtcDatetime
    count: int  # readings in the window
    total: dict[str, Stats] = {}
    phases: dict[Phase, dict[str, Stats]] = {}
    extra: dict[str, Stats] = {}

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Average:
        return cls.model_validate_json(data)

    def scopes(self) -> list[tuple[str, dict[str, Stats]]]:
        """(`total` | `L1`..`L3`, stats by field) for every scope this average has."""
        return [("total", self.total), *self.phases.items()]


Mode = Literal["off", "pv", "minpv", "now"]  # a charger's charge mode (docs/charging.md)
MODES: tuple[Mode, ...] = get_args(Mode)


class ChargerDecision(BaseModel):
    """What the controller decided for one charger of a site, and under which mode."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    charge: bool
    phases: Literal[1, 3]
    current_a: float  # 0 when not charging
    power_w: float  # phases x voltage x current
    mode: Mode
    reason: str
    target_kwh: float | None = None  # `now` until this much was charged (then `pv`)
    until: UtcDatetime | None = None  # `now` until this time (then `pv`)
    charged_kwh: float = 0.0  # charged since the mode was set


class SurplusSignal(BaseModel):
    """The PV-surplus decision for one site at one grid reading (docs/charging.md). `chargers` holds each
    charger's own decision; the top-level `charge`, `phases`, `current_a` and `reason` are those of the
    site's first charger (its only one, usually) and `power_w` is what all of them may draw together."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    site: str
    ts: UtcDatetime  # event time of the grid reading that triggered the decision
    grid_w: float  # + import, - export
    pv_w: float | None = None  # production of the site's PV meter(s), when known
    charger_w: float = 0.0  # the chargers' draw, counted as available while they charge
    battery_w: float | None = None  # the house battery: + charging, - discharging
    battery_soc: float | None = None  # its state of charge, %
    surplus_w: float  # what the chargers may use, averaged over the sliding window
    charge: bool
    phases: Literal[1, 3]
    current_a: float  # 0 when not charging
    power_w: float  # phases x voltage x current: what the decision lets the chargers draw
    reason: str
    chargers: dict[str, ChargerDecision] = Field(default_factory=dict)

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> SurplusSignal:
        return cls.model_validate_json(data)

    def for_charger(self, name: str) -> SurplusSignal:
        """The signal as one charger should see it: its own decision at the top level; not charging when
        the worker decided for other chargers only (its meters file does not have this one). A signal
        without `chargers` (from a worker before they were there) stays as it is."""
        decision = self.chargers.get(name)
        if decision is None:
            if not self.chargers:
                return self
            reason = f"no decision for charger {name} (not in the worker's meters file)"
            return self.model_copy(update={"charge": False, "current_a": 0.0, "power_w": 0.0, "reason": reason})
        return self.model_copy(update={"charge": decision.charge, "phases": decision.phases,
                                       "current_a": decision.current_a, "power_w": decision.power_w,
                                       "reason": decision.reason})


class ModeCommand(BaseModel):
    """A charge mode set for one charger (MQTT `wattstream/<site>/<charger>/mode/set`): a record of
    `meter.readings.site`, keyed by site, with header `command: mode`, so the site's controller applies
    it in order with the readings (the next grid reading decides under it) and keeps it in its state."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    site: str
    charger: str
    mode: Mode
    target_kwh: float | None = Field(default=None, gt=0, le=1000)  # only with `now`
    until: UtcDatetime | None = None  # only with `now`
    at: UtcDatetime  # when it was given

    @model_validator(mode="after")
    def _target_only_for_now(self) -> ModeCommand:
        if self.mode != "now" and (self.target_kwh is not None or self.until is not None):
            raise ValueError(f"a target (kWh or time) goes only with mode now, not {self.mode}")
        return self

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ModeCommand:
        return cls.model_validate_json(data)
