"""The meters file's `[[site]]` and `[[charger]]` entries: a site's PV-surplus controller and the
chargers it drives or informs (docs/charging.md says what each setting does)."""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

from pydantic import Field, model_validator

from pipeline.brokers import Section
from pipeline.logic.loadpoint import Loadpoint, Phases
from pipeline.models import Mode

NAME = r"^[^/+#]+$"  # site and charger names are MQTT topic levels
ChargerFormat = Literal["openevse", "goe", "openwb", "evcc", "wattstream"]


class Site(Section):
    """A site's PV-surplus controller (`[[site]]` in the meters file); its meters name it in `site`.

    evcc's delays (enable 60 s, disable 180 s, 6 A minimum, 100 W residual power kept exporting) with
    OpenEVSE's minimum charge time, start margin and slow stop smoothing; phase switching has its own
    delays, a margin and a minimum time between switches (docs/charging.md).
    """

    name: str = Field(default="home", pattern=NAME)
    voltage_v: float = Field(default=230.0, gt=0)
    min_current_a: float = Field(default=6.0, gt=0)
    max_current_a: float = Field(default=16.0, gt=0)
    phases: Phases = 3  # "auto": the charger can switch between 1 and 3 phases
    residual_w: float = 100.0  # kept exporting as a reserve; negative allows that much import
    window_seconds: float = Field(default=60.0, gt=0)  # sliding average of the surplus
    enable_delay_seconds: float = Field(default=60.0, ge=0)
    disable_delay_seconds: float = Field(default=180.0, ge=0)
    phase_up_delay_seconds: float = Field(default=300.0, ge=0)
    phase_down_delay_seconds: float | None = Field(default=None, ge=0)  # unset: the disable delay
    phase_up_margin_w: float = Field(default=300.0, ge=0)  # above 3-phase minimum power before going up
    phase_switch_interval_seconds: float = Field(default=600.0, ge=0)  # least time from a switch to going up
    # Where the charger's draw comes from: the site's `charger` meter, or the last setpoint (a charger
    # without a meter; only right when the grid meter sees the car, i.e. not for replayed days).
    charger_draw: Literal["meter", "setpoint"] = "meter"
    min_charge_seconds: float = Field(default=600.0, ge=0)  # a session lasts this long unless its mode changes
    # A charger stops only when the surplus smoothed over this long is short of its minimum too (a
    # first-order filter): passing clouds are ridden out at minimum current. 0: off (evcc's behaviour)
    stop_window_seconds: float = Field(default=600.0, ge=0)
    start_margin_w: float = Field(default=115.0, ge=0)  # above the minimum to start (OpenEVSE's 0.5 A hysteresis)
    # A house battery (a meter with role "battery"; SoC from its reading's `extra.soc_pct`): its charging
    # counts as surplus only at or above the priority SoC (below, the battery fills first). At or above the
    # buffer SoC a charging car is held at minimum current from the battery; at or above the start SoC it
    # may start from it. Unset: never — the battery is not discharged into the car in `pv` mode.
    battery_priority_soc: float = Field(default=100.0, ge=0, le=100)
    battery_buffer_soc: float | None = Field(default=None, ge=0, le=100)
    battery_start_soc: float | None = Field(default=None, ge=0, le=100)
    # The site's chargers, from its [[charger]] entries (`MetersFile.sites`); none: one named "charger"
    loadpoints: tuple[Loadpoint, ...] = Field(default=(), exclude=True)

    @model_validator(mode="after")
    def _consistent(self) -> Site:
        if self.min_current_a > self.max_current_a:
            raise ValueError(f"site {self.name}: min_current_a is above max_current_a")
        levels = [("battery_priority_soc", self.battery_priority_soc), ("battery_buffer_soc", self.battery_buffer_soc),
                  ("battery_start_soc", self.battery_start_soc)]
        given = [(name, value) for name, value in levels if value is not None]
        for (low, a), (high, b) in pairwise(given):
            if a > b:
                raise ValueError(f"site {self.name}: {low} ({a:g}) must not be above {high} ({b:g})")
        if self.battery_start_soc is not None and self.battery_buffer_soc is None:
            raise ValueError(f"site {self.name}: battery_start_soc needs battery_buffer_soc (a car started from "
                             "the battery must be held by it)")
        if self.down_delay_seconds > self.disable_delay_seconds:
            raise ValueError(f"site {self.name}: phase_down_delay_seconds must not exceed disable_delay_seconds "
                             "(a charger drawing more than the surplus must stop or switch within that delay)")
        return self

    @property
    def down_delay_seconds(self) -> float:
        """The 3p → 1p delay: `phase_down_delay_seconds`, or the disable delay when unset."""
        return self.disable_delay_seconds if self.phase_down_delay_seconds is None else self.phase_down_delay_seconds

    @property
    def chargers(self) -> tuple[Loadpoint, ...]:
        """The chargers the controller shares the surplus among, highest priority first."""
        return self.loadpoints or (Loadpoint("charger", 0, self.voltage_v, self.min_current_a, self.max_current_a,
                                             self.phases, "pv"),)


DEFAULT_TOPICS: dict[ChargerFormat, str] = {
    "openevse": "wattstream/{site}/grid_ie",  # OpenEVSE: set its "Grid IE" topic to this
    "goe": "/go-eCharger/{name}/ids/set",  # go-e API v2 over MQTT; name = the charger's serial
    "openwb": "openWB/set/counter/{name}/get/power",  # openWB 2 MQTT counter; name = the counter id
    "evcc": "wattstream/{site}/grid_w",  # evcc `mqtt` meter plugin
    "wattstream": "wattstream/{site}/surplus",  # our own JSON: the decision and its reason
}


class Charger(Section):
    """A charger `wattstream charger` drives (`[[charger]]` in the meters file)."""

    name: str = Field(pattern=NAME)
    site: str = Field(default="home", pattern=NAME)
    format: ChargerFormat
    topic: str | None = None  # default: DEFAULT_TOPICS of the format
    interval_seconds: float = Field(default=5.0, ge=0)  # at most one message per interval (OpenEVSE: 5-10 s)
    # OpenEVSE: its MQTT base topic, to drive it with our decision (`override`, its own divert off);
    # unset, it gets the grid power and runs its own divert on it
    control_topic: str | None = None
    # For the chargers the controller drives (`driven`): its share of the site's surplus. Unset limits
    # are the site's; a higher priority is served first.
    priority: int = 0
    mode: Mode = "pv"  # until one is set over MQTT
    min_current_a: float | None = Field(default=None, gt=0)
    max_current_a: float | None = Field(default=None, gt=0)
    phases: Phases | None = None

    @property
    def mqtt_topic(self) -> str:
        return (self.topic or DEFAULT_TOPICS[self.format]).format(site=self.site, name=self.name)

    @property
    def driven(self) -> bool:
        """Does the charger take our decision? go-e and `wattstream` do; OpenEVSE with a `control_topic`.
        The others carry the grid power to a charger (or evcc) that runs its own control."""
        return self.format in ("goe", "wattstream") or (self.format == "openevse" and self.control_topic is not None)

    def loadpoint(self, site: Site, meters: tuple[str, ...] = ()) -> Loadpoint:
        return Loadpoint(self.name, self.priority, site.voltage_v, self.min_current_a or site.min_current_a,
                         self.max_current_a or site.max_current_a, self.phases or site.phases, self.mode, meters)
