"""Real servers for the tests (docs/development.md), each on a free port with its own temp dir, torn down at the
end: Tansu (Kafka), Debian's mosquitto and influxd 1.6 (+ the v2-write forwarder). A server that is
missing or does not start fails the test run with the reason — nothing is skipped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.influxdb import Influx, start_influxdb
from wattstream.embedded.children import stop_child
from wattstream.embedded.servers import Server, ServerFailed, ServerMissing, free_port, start_mosquitto, start_tansu


def _announce(config: pytest.Config, text: str) -> None:
    """A line in the test log even while output is captured (CI shows which servers ran)."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(text)


def _server(request: pytest.FixtureRequest, start: Callable[[], Server]) -> Iterator[Server]:
    try:
        server = start()
    except (ServerMissing, ServerFailed) as exc:
        pytest.fail(f"cannot start a server the tests need: {exc}", pytrace=False)
    _announce(request.config, f"[servers] {server.name} started on {server.address} (log {server.log})")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mosquitto(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _server(request, lambda: start_mosquitto(tmp_path_factory.mktemp("mosquitto")))


@pytest.fixture(scope="session")
def influxdb(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _server(request, lambda: start_influxdb(tmp_path_factory.mktemp("influxdb"), "wattstream"))


@pytest.fixture
def influx(influxdb: Server) -> Influx:
    return Influx(influxdb)


class Process:
    """A wattstream command as a child process, its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "wattstream", *argv], env=env, cwd=workdir,
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not log {text!r} within {timeout}s:\n"
                                     f"{self.output()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> int:
        return stop_child(self.proc)


class Stack:
    """Worker and MQTT bridge against the session's servers, isolated by consumer group and bucket."""

    def __init__(self, tansu: Server, mosquitto: Server, influx: Influx, workdir: Path) -> None:
        self.tansu, self.mosquitto, self.influx, self.workdir = tansu, mosquitto, influx, workdir
        run = uuid.uuid4().hex[:8]
        self.env = {
            **os.environ,
            "WATTSTREAM_KAFKA_BOOTSTRAP": tansu.address,
            "WATTSTREAM_MQTT_HOST": "127.0.0.1",
            "WATTSTREAM_MQTT_PORT": str(mosquitto.port),
            "WATTSTREAM_MQTT_CLIENT_ID": f"bridge-{run}",
            "WATTSTREAM_INFLUX_URL": influx.url,
            "WATTSTREAM_INFLUX_TOKEN": "test-token",
            "WATTSTREAM_INFLUX_BUCKET": influx.bucket,
            "WATTSTREAM_WORKER_APP_ID": f"wattstream-{run}",
            "WATTSTREAM_WORKER_DATADIR": str(workdir / "worker"),
            "WATTSTREAM_WORKER_BATCH_SECONDS": "0.05",
            "WATTSTREAM_WORKER_SESSION_TIMEOUT": "6",
            "WATTSTREAM_WORKER_REBALANCE_TIMEOUT": "6",
            "WATTSTREAM_WORKER_METRICS_PORT": str(free_port()),
            "WATTSTREAM_WORKER_HEALTH_SECONDS": "1",
        }
        self.processes: list[Process] = []

    def start(self, name: str, *argv: str) -> Process:
        process = Process(name, list(argv), self.env, self.workdir)
        self.processes.append(process)
        return process

    def start_pipeline(self) -> tuple[Process, Process]:
        worker = self.start("worker", "worker")
        bridge = self.start("bridge", "bridge", "mqtt")
        bridge.wait_for("MQTT subscribed")
        worker.wait_for("Worker]: Ready")
        return worker, bridge

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


@pytest.fixture
def tansu(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A Tansu per test (it starts in a fraction of a second): no test sees another's topics or groups."""
    yield from _server(request, lambda: start_tansu(tmp_path / "tansu"))


@pytest.fixture
def stack(tansu: Server, mosquitto: Server, influx: Influx, tmp_path: Path) -> Iterator[Stack]:
    running = Stack(tansu, mosquitto, influx, tmp_path)
    yield running
    running.stop()
