"""Settings (pydantic-settings): environment variables `WATTSTREAM_<SECTION>_<NAME>` or a `.env` file,
plus a meters file (TOML) listing the meters. Built once in the entry point and passed down.

Examples: `WATTSTREAM_KAFKA_BOOTSTRAP=kafka:9092`, `WATTSTREAM_MQTT_HOST=mosquitto`,
`WATTSTREAM_INFLUX_URL=http://influxdb:8086` (+ `_TOKEN`, `_ORG`, `_BUCKET`),
`WATTSTREAM_METERS_FILE=meters.toml`. Secrets are `SecretStr`: masked in every repr and log line.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.brokers import KafkaSettings, MqttSettings, Section
from pipeline.drivers import DRIVERS, Config, broute, routes
from pipeline.drivers.config import aes_key
from pipeline.drivers.mqtt_json_mapping import JsonMapping, Mappings
from pipeline.sites import NAME, Charger, Role, Site


class InfluxSettings(Section):
    url: str | None = None  # unset: the file sink writes instead
    token: SecretStr | None = None
    token_file: Path | None = None  # or the token in this file (compose: the worker's write-only token)
    org: str = "wattstream"
    bucket: str = "wattstream"
    timeout_ms: int = 10_000

    @model_validator(mode="after")
    def _one_token(self) -> InfluxSettings:
        if self.token is not None and self.token_file is not None:
            raise ValueError("influx: a token or a token_file, not both")
        return self

    def api_token(self) -> str:
        """`token`, or what `token_file` holds (read now: the file may be written after the worker started)."""
        if self.token_file is not None:
            return self.token_file.read_text().strip()
        return self.token.get_secret_value() if self.token else ""


class FilesSettings(Section):
    dir: Path = Path("wattstream-data")
    name: str = "wattstream"  # daily files YYYYMMDD-<name>.txt
    tz: str | None = None  # time zone of the file lines; unset: the machine's local zone


class BrouteSettings(Section):
    """The Wi-SUN dongle of a Japanese B-route meter (RL7023 Stick-D/DSS or /IPS, SKSTACK IP)."""

    id: SecretStr | None = None  # the 32-character B-route ID from the power company
    password: SecretStr | None = None  # the 12-character B-route password
    variant: Literal["dss", "ips"] = "dss"  # dual-stack (DSS/DSE) or B-route-only (IPS) firmware
    device: str = broute.DEVICE  # the meter's name (meter id broute:<device>)
    # (EPCs, seconds) polled each on its own cycle, as keilog and the ECHONET guidelines suggest
    polls: tuple[tuple[tuple[str, ...], float], ...] = (
        (("E7", "E8"), 10.0), (("E0", "E3"), 300.0), (("D3", "D7", "E1"), 3600.0))
    silence_timeout: float = 600.0  # no frame for this long: start the session again


class PublishSettings(Section):
    """`wattstream publish`: where readings go out on MQTT (a meter's own state topic: `state_topic` in
    the meters file)."""

    base_topic: str = "wattstream"  # <base>/<meter>/state and /reading
    discovery_prefix: str = "homeassistant"  # Home Assistant's MQTT discovery prefix


class WindowSettings(Section):
    """DESIGN §4: the debounce interval, the averaging window and its grace period (seconds)."""

    debounce_seconds: int = Field(default=300, gt=0)
    average_seconds: int = Field(default=600, gt=0)
    grace_seconds: float = Field(default=60.0, ge=0)


class WorkerSettings(Section):
    app_id: str = "wattstream"  # the Kafka consumer group
    datadir: Path | None = None  # Faust's local state; unset: <files dir>/worker
    # An agent's batch: at most this many records, or what arrived within this long (a busy agent finds
    # full batches waiting; an idle one hands a lone record on at once)
    batch_size: int = Field(default=1000, ge=1)
    batch_seconds: float = Field(default=0.01, gt=0)
    # The longest a fetch of the worker, `charger` and `publish` waits for records: what a reading may
    # wait at each hop on Tansu (`agents.faust_internals.fetch_promptly` says why)
    fetch_wait_ms: int = Field(default=100, ge=1)
    # How often an agent saves its state and progress (a kill makes it apply again what came after,
    # with the same outputs); between checkpoints a batch writes nothing to its changelog
    checkpoint_seconds: float = Field(default=5.0, ge=0)
    retry_max_seconds: float = Field(default=30.0, gt=0)  # sink back-off ceiling while holding the stream
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics_port: int = Field(default=9108, ge=0, le=65535)  # Prometheus `/metrics` on all interfaces; 0: off
    health_seconds: float = Field(default=10.0, gt=0)  # how often the InfluxDB measurement `pipeline` is written
    # Consumer group timing. A worker that leaves without saying so keeps its partitions this long;
    # Tansu also holds every join (a fresh group's first, and the rejoin after a member died) for about
    # half the rebalance timeout. Failover ≈ session + rebalance / 2 + 1 s (scripts/failover.py).
    session_timeout: float = Field(default=30.0, gt=0)
    rebalance_timeout: float = Field(default=30.0, gt=0)


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

    def roles(self) -> dict[str, tuple[str, Role]]:
        """meter_id → (site, role) of the meters that feed a site's surplus (grid, pv, charger, battery)."""
        return {m.meter_id: (m.site, m.role) for m in self.meter if m.role != "other"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WATTSTREAM_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        env_file=".env",
        extra="ignore",
        frozen=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    mqtt: MqttSettings = MqttSettings()
    influx: InfluxSettings = InfluxSettings()
    files: FilesSettings = FilesSettings()
    worker: WorkerSettings = WorkerSettings()
    windows: WindowSettings = WindowSettings()
    broute: BrouteSettings = BrouteSettings()
    publish: PublishSettings = PublishSettings()
    meters_file: Path | None = None

    @property
    def worker_datadir(self) -> Path:
        return self.worker.datadir or self.files.dir / "worker"

    def plant(self) -> MetersFile:
        """The meters file's entries (none when no file is configured)."""
        return load_meters(self.meters_file) if self.meters_file else MetersFile()


def load_meters(path: Path) -> MetersFile:
    """Read a meters file:

    ```toml
    [[meter]]
    driver = "iammeter"
    device = "DA2BED94"
    role = "grid"          # grid | pv | charger | other
    site = "home"
    max_power_w = 50000    # plausibility limits (defaults); also max_current_a = 100

    [[site]]
    name = "home"
    phases = "auto"
    max_current_a = 16

    [[charger]]
    name = "garage"
    site = "home"
    format = "openevse"    # openevse | goe | openwb | evcc | wattstream
    ```
    """
    try:
        return MetersFile.model_validate(tomllib.loads(path.read_text()))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"meters file {path}: {exc}") from exc
    except ValidationError as exc:  # said without the values given: they may hold a key
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors(include_input=False, include_url=False))
        raise ValueError(f"meters file {path}: {problems}") from None
