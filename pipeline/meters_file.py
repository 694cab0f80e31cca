"""The meters file (TOML, `WATTSTREAM_METERS_FILE`): the `[[meter]]`, `[[site]]`, `[[charger]]` and
`[[mqtt_json]]` entries, checked as a whole when read (`MetersFile.load`), and what the worker, the
bridges and the backtest take from it. docs/configuration.md describes every entry."""

from __future__ import annotations

import tomllib
from pathlib import Path
from types import MappingProxyType

from pydantic import Field, SecretStr, ValidationError, model_validator

from pipeline.brokers import Section
from pipeline.drivers import DRIVERS, Config, routes
from pipeline.drivers.config import aes_key
from pipeline.drivers.mqtt_json_mapping import JsonMapping, Mappings
from pipeline.errors import ConfigError, problems
from pipeline.logic.plausible import Limits
from pipeline.logic.surplus import Feed, Role
from pipeline.sites import NAME, Charger, Site


class Meter(Section):
    """One entry of the meters file."""

    driver: str
    device: str  # the device id as the bridge sees it (IAMMETER SN, ...)
    role: Role = "other"
    site: str = Field(default="home", pattern=NAME)
    charger: str | None = None  # role "charger": the [[charger]] it measures (not needed when the site has one)
    key: SecretStr | None = None  # EVN / encrypted P1 decryption key (hex; `device` = the system title)
    state_topic: str | None = None  # `wattstream publish`: this meter's state here (default <base>/<meter>/state)
    # Plausibility limits: a reading beyond them (or a register rising faster than this power could
    # count) is implausible and goes to the dead letters instead of the sinks.
    max_power_w: float = Field(default=50_000.0, gt=0)  # active, apparent and reactive, total and per phase
    max_current_a: float = Field(default=100.0, gt=0)  # |current| of every scope (phase, total)

    def limits(self) -> Limits:
        return Limits(max_power_w=self.max_power_w, max_current_a=self.max_current_a)

    @model_validator(mode="after")
    def _known_driver(self) -> Meter:
        if self.driver not in DRIVERS:
            raise ValueError(f"meter {self.device}: no driver {self.driver!r} (there are {', '.join(sorted(DRIVERS))})")
        return self

    @property
    def meter_id(self) -> str:
        return f"{self.driver}:{self.device}"


class MetersFile(Section):
    """The meters file: `[[meter]]`, `[[site]]`, `[[charger]]` and `[[mqtt_json]]` entries."""

    meter: tuple[Meter, ...] = ()
    site: tuple[Site, ...] = ()
    charger: tuple[Charger, ...] = ()
    mqtt_json: tuple[JsonMapping, ...] = ()

    @model_validator(mode="after")
    def _mappings_compile(self) -> MetersFile:
        routes(self.driver_config())  # a topic without a device level, or taken already, is found now
        return self

    @model_validator(mode="after")
    def _chargers_fit(self) -> MetersFile:
        if any(site.loadpoints for site in self.site):
            raise ValueError("a [[site]] names no chargers: each [[charger]] names its site")
        names = [(c.site, c.name) for c in self.charger]
        if len(set(names)) < len(names):
            raise ValueError("two [[charger]] entries of one site have the same name")
        ours = [c.mqtt_topic for c in self.charger if c.format == "wattstream"]
        if len(set(ours)) < len(ours):  # each takes its own decision
            raise ValueError("two wattstream chargers on one topic: give each its own `topic`")
        sites = {site.name: site for site in self.site}
        for charger in self.charger:
            lp = charger.loadpoint(sites.get(charger.site, Site(name=charger.site)))
            if lp.min_current_a > lp.max_current_a:
                raise ValueError(f"charger {lp.name}: min_current_a is above max_current_a")
        return self

    def driver_config(self) -> Config:
        """What the drivers need of this file: the meters' keys (by device id, upper case) and the mappings.
        Errors never show a key."""
        keys = {meter.device.upper(): aes_key(meter.key.get_secret_value(), meter.meter_id)
                for meter in self.meter if meter.key is not None}
        return Config(MappingProxyType(keys), Mappings.of(self.mqtt_json))

    def sites(self) -> dict[str, Site]:
        """Every site a grid meter names, with its `[[site]]` settings (defaults if it has none)."""
        configured = {site.name: site for site in self.site}
        names = {m.site for m in self.meter if m.role == "grid"} | set(configured)
        sites = {}
        for name in sorted(names):
            site = configured.get(name, Site(name=name))
            ours = [c for c in self.charger if c.site == name and c.driven]
            meters = [m for m in self.meter if m.site == name and m.role == "charger"]
            driven = sorted((c.loadpoint(site, tuple(m.meter_id for m in meters if m.charger == c.name or (
                m.charger is None and len(ours) == 1))) for c in ours), key=lambda lp: (-lp.priority, lp.name))
            sites[name] = site.model_copy(update={"loadpoints": tuple(driven)})  # validated already
        return sites

    def feeds(self) -> dict[str, Feed]:
        """meter_id → its site and role, of the meters that feed a site's surplus (grid, pv, charger, battery)."""
        return {m.meter_id: Feed(m.site, m.role) for m in self.meter if m.role != "other"}

    @classmethod
    def load(cls, path: Path) -> MetersFile:
        """Read and check a meters file (every entry and key: docs/configuration.md, "The meters file").
        A wrong file is a `ConfigError` that names the problem without the values given."""
        try:
            return cls.model_validate(tomllib.loads(path.read_text()))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"meters file {path}: {exc}") from exc
        except ValidationError as exc:  # said without the values given: they may hold a key
            raise ConfigError(f"meters file {path}: {problems(exc, lambda loc: '.'.join(map(str, loc)))}") from None
