"""Publishing to the test broker as a meter would; the environment of a `bridge mqtt` process; certificates
for its TLS listener."""

import os
import pwd
import subprocess
from pathlib import Path

import paho.mqtt.publish as publish


def bridge_env(kafka: str, mqtt_port: int, client_id: str, **more: str) -> dict[str, str]:
    """The environment of a `wattstream bridge mqtt` on Kafka `kafka` and the local MQTT broker on `mqtt_port`
    (`more`: further WATTSTREAM_* settings)."""
    return {**os.environ, "WATTSTREAM_KAFKA_BOOTSTRAP": kafka, "WATTSTREAM_MQTT_HOST": "127.0.0.1",
            "WATTSTREAM_MQTT_PORT": str(mqtt_port), "WATTSTREAM_MQTT_CLIENT_ID": client_id, **more}


def publish_all(port: int, messages: list[tuple[str, bytes | str]]) -> None:
    publish.multiple([{"topic": topic, "payload": payload, "qos": 1} for topic, payload in messages],
                     hostname="127.0.0.1", port=port)


def certificates(into: Path, host: str = "127.0.0.1", owner: str | None = None) -> Path:
    """`scripts/mqtt-certs` as a user runs it: the CA in `into`/ca, the broker's certificate, key (given to
    `owner`, a user name; default: the script's) and ca.crt in `into`/certs, which is returned."""
    env = {**os.environ, "CA_DIR": str(into / "ca")}
    if owner is not None:
        env["MOSQUITTO_UID"] = str(pwd.getpwnam(owner).pw_uid)
    subprocess.run([str(Path(__file__).parent.parent / "scripts" / "mqtt-certs"), host, str(into / "certs")],
                   env=env, check=True, capture_output=True)
    return into / "certs"
