"""InfluxDB for the tests: Debian's influxd 1.6 on a free port with its own directory, and a small
forwarder in front of it that takes the v2 write API (`/api/v2/write?bucket=&precision=`, what the sink
and Telegraf speak) and passes it on as a v1 `/write` — what InfluxDB 1.8+ does by itself. Every other
request (`/query`, `/ping`) goes through unchanged."""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from wattstream.embedded.servers import Server, ServerFailed, ServerMissing, free_port, start_server

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
    params = {"q": q, **({"db": db} if db else {})}
    data = urllib.parse.urlencode(params).encode()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/query", data=data, timeout=30) as resp:
        return dict(json.loads(resp.read()))


def influx_rows(port: int, q: str, db: str) -> list[dict[str, Any]]:
    """One InfluxQL statement → its rows as dicts, tags included (all series concatenated); an error of the
    statement raises AssertionError."""
    statement = influx_query(port, q, db=db)["results"][0]  # type: ignore[index]
    if "error" in statement:
        raise AssertionError(f"InfluxQL error for {q!r}: {statement['error']}")
    return [{**series.get("tags", {}), **dict(zip(series["columns"], values, strict=True))}
            for series in statement.get("series", []) for values in series["values"]]


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
    server = start_server("influxd", [binary, "-config", str(conf)], workdir, port)
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


class Influx:
    """One fresh database (= v2 bucket) on the session's influxd."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.bucket = f"t{uuid.uuid4().hex[:12]}"
        self.url = forwarder_url(server)
        influx_query(server.port, f'CREATE DATABASE "{self.bucket}"')

    def query(self, q: str) -> list[dict[str, Any]]:
        """InfluxQL → rows as dicts (all series concatenated)."""
        return influx_rows(self.server.port, q, self.bucket)

    def wait_rows(self, q: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.query(q)
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.5)
