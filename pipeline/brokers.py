"""How wattstream reaches its brokers (sections of `pipeline.settings`): Kafka and MQTT, each with TLS for a
broker on another host, and SASL for Kafka. `KafkaSettings.connection()` is what every Kafka client is
built from; `bridges.mqtt.new_client` what every MQTT client is built from."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Connection = Mapping[str, Any]  # aiokafka's arguments to reach the broker: `KafkaSettings.connection()`


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Tls(Section):
    """TLS to a broker on another host: `ca_file` is the CA that signed the broker's certificate (none: the
    system's CAs); `cert_file` + `key_file` a client certificate, where the broker asks for one."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _client_certificate_whole(self) -> _Tls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")
        return self

    @property
    def _tls_files(self) -> bool:
        return any(f is not None for f in (self.ca_file, self.cert_file, self.key_file))

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the broker's certificate and host name; presents the client certificate if set."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


class KafkaSettings(_Tls):
    bootstrap: str = "localhost:9092"
    partitions: int = Field(default=4, ge=1)  # of every topic wattstream creates; the unit of scale-out
    # PLAINTEXT inside the stack; a broker on another host: SSL, SASL_SSL (or SASL_PLAINTEXT on a trusted link)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    username: str | None = None  # SASL
    password: SecretStr | None = None

    @property
    def tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL")

    def connection(self) -> Connection:
        """How every Kafka client of wattstream reaches the broker (aiokafka's arguments): its address and,
        for a broker on another host, TLS (`ca_file`, a client certificate) and SASL."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.security_protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.sasl:
            assert self.password is not None  # _consistent insists
            options |= {"sasl_mechanism": self.sasl_mechanism, "sasl_plain_username": self.username,
                        "sasl_plain_password": self.password.get_secret_value()}
        return options

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        if self.sasl and not (self.username and self.password and self.password.get_secret_value()):
            raise ValueError(f"kafka: {self.security_protocol} needs a username and a password")
        if self._tls_files and not self.tls:
            raise ValueError("kafka: TLS files are set but security_protocol is "
                             f"{self.security_protocol} (SSL or SASL_SSL uses them)")
        return self


class MqttSettings(_Tls):
    host: str = "localhost"
    port: int = 1883  # 8883 is MQTT over TLS by convention
    username: str | None = None
    password: SecretStr | None = None
    client_id: str = "wattstream-bridge"  # fixed: the broker keeps the QoS 1 session while we are away
    keepalive: int = 60
    tls: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        if self._tls_files and not self.tls:
            raise ValueError("mqtt: TLS files are set but tls is off (WATTSTREAM_MQTT_TLS=true)")
        return self
