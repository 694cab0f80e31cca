"""Publishing to the test broker as a meter would; certificates for its TLS listener."""

import os
import pwd
import subprocess
from pathlib import Path

import paho.mqtt.publish as publish


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
