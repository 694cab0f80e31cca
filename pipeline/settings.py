"""Settings (pydantic-settings): environment variables `WATTSTREAM_<SECTION>_<NAME>` or a `.env` file,
plus a meters file (TOML) listing the meters. Built once in the entry point and passed down.

Examples: `WATTSTREAM_KAFKA_BOOTSTRAP=kafka:9092`, `WATTSTREAM_MQTT_HOST=mosquitto`,
`WATTSTREAM_INFLUX_URL=http://influxdb:8086` (+ `_TOKEN`, `_ORG`, `_BUCKET`),
`WATTSTREAM_METERS_FILE=meters.toml`. Secrets are `SecretStr`: masked in every repr and log line.
Every WATTSTREAM_* variable is read here and nowhere else (`load_settings`); a wrong value or meters file
is a `ConfigError`, said in one line without the values given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from pipeline.brokers import KafkaSettings, MqttSettings, Section
from pipeline.drivers import broute
from pipeline.errors import ConfigError, problems
from pipeline.logic.windows import WindowConfig
from pipeline.meters_file import MetersFile


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


class DecodeSettings(Section):
    """`wattstream decode`: one AES key (32 hex digits) for every meter of its input, instead of the meters
    file's (`--key` does the same, but a command line is visible to other users)."""

    key: SecretStr | None = None


class WindowSettings(Section):
    """The debounce interval, the averaging window and its grace period (seconds)."""

    debounce_seconds: int = Field(default=300, gt=0)
    average_seconds: int = Field(default=600, gt=0)
    grace_seconds: float = Field(default=60.0, ge=0)

    def config(self) -> WindowConfig:
        return WindowConfig(debounce_us=self.debounce_seconds * 1_000_000, window_us=self.average_seconds * 1_000_000,
                            grace_us=int(self.grace_seconds * 1_000_000))


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
    decode: DecodeSettings = DecodeSettings()
    meters_file: Path | None = None

    @property
    def worker_datadir(self) -> Path:
        return self.worker.datadir or self.files.dir / "worker"

    def read_meters_file(self) -> MetersFile:
        """The meters file's entries (none when no file is configured)."""
        return MetersFile.load(self.meters_file) if self.meters_file else MetersFile()


def load_settings() -> Settings:
    """`Settings()` from the environment and `.env`; a wrong value is a `ConfigError` naming its variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(f"settings: {problems(exc, _variable)}") from None
    except SettingsError as exc:  # a value that is not the JSON its field needs (WATTSTREAM_BROUTE_POLLS)
        raise ConfigError(f"settings: {exc}") from None


def _variable(loc: tuple[int | str, ...]) -> str:
    """The environment variable of a place in `Settings` (("kafka", "partitions") → WATTSTREAM_KAFKA_PARTITIONS)."""
    config = Settings.model_config
    section, *inner = map(str, loc)
    name = f"{config.get('env_prefix', '')}{section}".upper()
    if section in Settings.model_fields and hasattr(Settings.model_fields[section].annotation, "model_fields"):
        return name + (f"{config.get('env_nested_delimiter', '_')}{'.'.join(inner)}".upper() if inner else "_*")
    return name
