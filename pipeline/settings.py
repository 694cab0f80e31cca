"""Settings (pydantic-settings): environment variables `WATTSTREAM_<SECTION>_<NAME>` or a `.env` file,
plus a meters file (TOML) listing the meters. Built once in the entry point and passed down.

Examples: `WATTSTREAM_KAFKA_BOOTSTRAP=kafka:9092`, `WATTSTREAM_MQTT_HOST=mosquitto`,
`WATTSTREAM_INFLUX_URL=http://influxdb:8086` (+ `_TOKEN`, `_ORG`, `_BUCKET`),
`WATTSTREAM_METERS_FILE=meters.toml`. Secrets are `SecretStr`: masked in every repr and log line.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

Role = Literal["grid", "pv", "charger", "other"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    bootstrap: str = "localhost:9092"
    partitions: int = Field(default=4, ge=1)  # of every topic wattstream creates; the unit of scale-out


class MqttSettings(_Section):
    host: str = "localhost"
    port: int = 1883
    username: str | None = None
    password: SecretStr | None = None
    client_id: str = "wattstream-bridge"  # fixed: the broker keeps the QoS 1 session while we are away
    keepalive: int = 60


class InfluxSettings(_Section):
    url: str | None = None  # unset: the file sink writes instead
    token: SecretStr | None = None
    org: str = "wattstream"
    bucket: str = "wattstream"
    timeout_ms: int = 10_000


class FilesSettings(_Section):
    dir: Path = Path("wattstream-data")
    name: str = "wattstream"  # daily files YYYYMMDD-<name>.txt
    tz: str | None = None  # time zone of the file lines; unset: the machine's local zone


class BrouteSettings(_Section):
    """The Wi-SUN dongle of a Japanese B-route meter (RL7023 Stick-D/DSS or /IPS, SKSTACK IP)."""

    id: SecretStr | None = None  # the 32-character B-route ID from the power company
    password: SecretStr | None = None  # the 12-character B-route password
    variant: Literal["dss", "ips"] = "dss"  # dual-stack (DSS/DSE) or B-route-only (IPS) firmware
    device: str = "meter"  # the meter's name (meter id broute:<device>)
    # (EPCs, seconds) polled each on its own cycle, as keilog and the ECHONET guidelines suggest
    polls: tuple[tuple[tuple[str, ...], float], ...] = (
        (("E7", "E8"), 10.0), (("E0", "E3"), 300.0), (("D3", "D7", "E1"), 3600.0))
    silence_timeout: float = 600.0  # no frame for this long: start the session again


class WorkerSettings(_Section):
    app_id: str = "wattstream"  # the Kafka consumer group
    datadir: Path | None = None  # Faust's local state; unset: <files dir>/worker
    batch_size: int = Field(default=1000, ge=1)  # sink batch: at most this many readings...
    batch_seconds: float = Field(default=0.5, gt=0)  # ...or this long
    retry_max_seconds: float = Field(default=30.0, gt=0)  # sink back-off ceiling while holding the stream
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Consumer group timing. A worker that leaves without saying so keeps its partitions this long;
    # Tansu also holds a fresh group's first join for about half the rebalance timeout.
    session_timeout: float = Field(default=30.0, gt=0)
    rebalance_timeout: float = Field(default=30.0, gt=0)


class Meter(_Section):
    """One entry of the meters file."""

    driver: str
    device: str  # the device id as the bridge sees it (IAMMETER SN, ...)
    role: Role = "other"
    site: str = "home"
    key: SecretStr | None = None  # EVN decryption key (hex)

    @property
    def meter_id(self) -> str:
        return f"{self.driver}:{self.device}"


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
    broute: BrouteSettings = BrouteSettings()
    meters_file: Path | None = None

    @property
    def worker_datadir(self) -> Path:
        return self.worker.datadir or self.files.dir / "worker"

    def meters(self) -> tuple[Meter, ...]:
        """The meters file's `[[meter]]` entries (none when no file is configured)."""
        return load_meters(self.meters_file) if self.meters_file else ()


def load_meters(path: Path) -> tuple[Meter, ...]:
    """Read a meters file:

    ```toml
    [[meter]]
    driver = "iammeter"
    device = "DA2BED94"
    role = "grid"
    site = "home"
    ```
    """
    try:
        data = tomllib.loads(path.read_text())
        return tuple(Meter.model_validate(entry) for entry in data.get("meter", []))
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ValueError(f"meters file {path}: {exc}") from exc
