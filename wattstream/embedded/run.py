"""`wattstream run`: the whole pipeline on one machine, no Docker, no root.

Starts Tansu and an MQTT broker (mosquitto if installed, else amqtt) on local ports, then the worker,
the MQTT bridge, the simulated meters, a serial bridge reading a simulated line sensor and a B-route
bridge driving a simulated RL7023 dongle (each on a pseudo-terminal), and the charger bridge driving
the simulated site's car (plus an OpenEVSE and a go-e topic to look at), as child processes (logs
under `<files dir>/logs/`), and shows live in the terminal what flows through `meter.readings`,
`power.surplus` and `meter.deadletter`.

Made to run for months, although Tansu keeps every record in memory and never deletes one: the run
starts a new, empty one from a snapshot of what the pipeline needs to go on (`embedded.snapshot`) when
the old one holds more than `--kafka-mb`, and a stop ends with the same snapshot. The signals, the
rotation, where the state is kept and what a kill loses: docs/operations.md, "The embedded run".
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from pipeline.brokers import Connection, KafkaSettings
from pipeline.logs import toggle_debug
from pipeline.retry import first_of
from pipeline.settings import Settings
from simulators.meters import demo_meters_toml, run_line_sensor
from simulators.rl7023 import SimulatedRl7023
from wattstream.embedded import snapshot
from wattstream.embedded.children import Children
from wattstream.embedded.servers import Server, free_port, port_is_free, rss_mb, start_mqtt_broker, start_tansu
from wattstream.embedded.view import LiveView, show, watch
from wattstream.signals import run_until_signal

DEMO_BROUTE_ID = "00000000000000000000000000000000"  # the simulated dongle's; real ones come from the utility
DEMO_BROUTE_PASSWORD = "DEMOPASSWORD"
KAFKA_CLIENTS = ("charger", "serial", "broute", "bridge", "worker")  # in the order they are stopped
ROTATE_CHECK_SECONDS = 30.0


def _chosen(section: BaseModel, name: str, default: float) -> object:
    """A setting's value where it was set (environment or .env), else the embedded run's own default."""
    return getattr(section, name) if name in section.model_fields_set else default


def _preferred(port: int) -> int | None:
    """The usual port when it is free (so real meters can be pointed at it), else any free one."""
    return port if port_is_free(port) else None


def _meters_with_simulated(settings: Settings, work: Path) -> Path:
    """The user's meters file plus the simulated EVN meter and its demo key and the simulated PV site
    with its chargers, in the run's private temp dir (deleted at the end; readable by this user only,
    as it may hold the user's keys)."""
    text = settings.meters_file.read_text() if settings.meters_file else ""
    text += "\n" + demo_meters_toml()
    path = work / "meters.toml"
    path.touch(mode=0o600)
    path.write_text(text)
    return path


def _pty() -> tuple[int, str]:
    """A pseudo-terminal pair: (the device end for the simulated sensor, the port path for the bridge)."""
    device, port = os.openpty()
    path = os.ttyname(port)
    os.close(port)
    return device, path


@dataclass
class Kafka:
    """The run's Tansu, started anew on the same port by `rotate`, and whether what it holds is a state to
    take a snapshot of (no worker running, the last one stopped cleanly)."""

    server: Server
    work: Path
    app_id: str
    snapshot: Path  # where the snapshot waits between a stop and the next start
    rotations: int = 0
    consistent: bool = True
    floor_mb: float = 0.0  # Tansu's memory after the last rotation, or the last one that failed
    _before_worker: bool = True  # `consistent` when the worker was started

    def due(self, limit_mb: float) -> bool:
        """Over `limit_mb`, and twice what the last rotation left (a backlog larger than the limit, or a
        worker that would not stop cleanly, does not bring a rotation every half minute)."""
        return rss_mb(self.server.proc.pid) > max(limit_mb, 2 * self.floor_mb)

    @property
    def connection(self) -> Connection:
        return KafkaSettings(bootstrap=self.server.address).connection()

    async def restore(self) -> None:
        if self.snapshot.exists():
            print(f"Kafka: going on from the snapshot {self.snapshot}", flush=True)
            try:
                await snapshot.restore(self.connection, self.snapshot)
            except (ValueError, KeyError) as exc:  # not one this version reads: start without, keep it
                aside = self.snapshot.with_suffix(".unread")
                self.snapshot.replace(aside)
                print(f"!! the snapshot is not readable ({exc!r}); starting without it (kept as {aside})",
                      flush=True)

    def start_clients(self, children: Children) -> None:
        self._before_worker = self.consistent
        self.consistent = False
        for name in reversed(KAFKA_CLIENTS):
            children.start(name)

    async def stop_clients(self, children: Children) -> bool:
        """Stop every Kafka client; True when the worker stopped cleanly (what it applied is saved), or was
        ended by the TERM before it could handle one: before it had done anything."""
        code = (await asyncio.to_thread(children.stop, KAFKA_CLIENTS)).get("worker")
        self.consistent = code == 0 or (code == -signal.SIGTERM and self._before_worker)
        if not self.consistent:
            print(f"!! the worker did not stop cleanly ({code}): no snapshot of Kafka", flush=True)
        return self.consistent

    async def take(self) -> bool:
        """The snapshot, when Kafka holds a consistent state; False when there is none."""
        if not self.consistent:
            return False
        taking = await asyncio.create_subprocess_exec(  # (its own session: a Ctrl-C does not cut it short)
            sys.executable, "-m", "wattstream.embedded.snapshot", self.server.address, self.app_id,
            str(self.snapshot), start_new_session=True)
        if (code := await taking.wait()) != 0:
            print(f"!! no snapshot of Kafka (it failed with {code}, above)", flush=True)
            return False
        return True

    async def rotate(self, children: Children) -> None:
        """A new, empty Tansu on the same port, from a snapshot of this one; without a snapshot, the clients
        go on with this one. Raises when the new one does not start: the snapshot is on disk then, and the
        next start of the run goes on from it."""
        held = rss_mb(self.server.proc.pid)
        print(f"Kafka: Tansu holds {held:.0f} MB; starting a new one from a snapshot", flush=True)
        self.floor_mb = held
        if not (await self.stop_clients(children) and await self.take()):
            print("!! Kafka not rotated; going on with this one", flush=True)
            self.start_clients(children)
            return
        await asyncio.to_thread(self.server.stop)
        self.rotations += 1
        self.server = await asyncio.to_thread(start_tansu, self.work / f"tansu-{self.rotations}", self.server.port)
        await self.restore()
        self.start_clients(children)
        self.floor_mb = rss_mb(self.server.proc.pid)
        print(f"Kafka: rotated ({held:.0f} MB → {self.floor_mb:.0f} MB)", flush=True)


def run_embedded(settings: Settings, interval: float, duration: float | None, kafka_mb: float) -> int:
    logs = settings.files.dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    state = settings.files.dir / "state"
    state.mkdir(parents=True, exist_ok=True)
    lock = (state / "lock").open("w")  # held until this process ends
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"!! another wattstream run uses {settings.files.dir} (its state, its files)", flush=True)
        return 2
    work = Path(tempfile.mkdtemp(prefix="wattstream-"))
    children = Children(logs)
    kafka: Kafka | None = None
    mqtt: Server | None = None
    sensor_stop = threading.Event()
    dongle: SimulatedRl7023 | None = None
    try:
        tansu = start_tansu(work / "tansu", _preferred(9092))
        kafka = Kafka(tansu, work, settings.worker.app_id, state / "kafka-snapshot.jsonl")
        mqtt = start_mqtt_broker(state / "mqtt", _preferred(1883))
        metrics = settings.worker.metrics_port and (_preferred(settings.worker.metrics_port) or free_port())
        print(f"Kafka (Tansu) on {tansu.address}, MQTT ({mqtt.name}) on {mqtt.address}, the worker's metrics on "
              f"{metrics or 'no port'}", flush=True)
        env = {
            **os.environ,
            "WATTSTREAM_KAFKA_BOOTSTRAP": tansu.address,
            "WATTSTREAM_MQTT_HOST": "127.0.0.1",
            "WATTSTREAM_MQTT_PORT": str(mqtt.port),
            # the one worker rejoins its group after a restart within 6 s, unless chosen otherwise
            "WATTSTREAM_WORKER_SESSION_TIMEOUT": str(_chosen(settings.worker, "session_timeout", 6.0)),
            "WATTSTREAM_WORKER_REBALANCE_TIMEOUT": str(_chosen(settings.worker, "rebalance_timeout", 6.0)),
            "WATTSTREAM_WORKER_METRICS_PORT": str(metrics),  # (0: off, as chosen)
        }
        env["WATTSTREAM_METERS_FILE"] = str(_meters_with_simulated(settings, work))
        sink = f"InfluxDB {settings.influx.url}" if settings.influx.url else (
            f"files {settings.files.dir}/YYYYMMDD-{settings.files.name}.txt")
        sensor_fd, sensor_port = _pty()
        threading.Thread(target=run_line_sensor, args=(sensor_fd, interval, sensor_stop), daemon=True).start()
        dongle_fd, dongle_port = _pty()
        dongle = SimulatedRl7023(dongle_fd, route_id=DEMO_BROUTE_ID, password=DEMO_BROUTE_PASSWORD).start()
        broute_env = {**env, "WATTSTREAM_BROUTE_ID": DEMO_BROUTE_ID, "WATTSTREAM_BROUTE_PASSWORD": DEMO_BROUTE_PASSWORD,
                      "WATTSTREAM_BROUTE_DEVICE": "sim-jp",
                      "WATTSTREAM_BROUTE_POLLS": '[[["E7", "E8"], 10], [["E0", "E3"], 30], [["D3", "D7", "E1"], 60]]'}
        children.commands |= {
            "worker": (["worker"], env), "bridge": (["bridge", "mqtt"], env),
            "simulator": (["simulate", "--interval", str(interval)], env),
            "serial": (["bridge", "serial", "--port", sensor_port, "--device", "garden"], env),
            "broute": (["bridge", "broute", "--port", dongle_port], broute_env), "charger": (["charger"], env)}
        rotate = asyncio.Event()  # USR2

        def usr1() -> None:
            toggle_debug()
            for proc in list(children.running.values()):
                proc.send_signal(signal.SIGUSR1)

        return run_until_signal(lambda stop: _main(kafka, children, LiveView(sink), duration, kafka_mb, logs, stop,
                                                   rotate), usr1=usr1, usr2=rotate.set)
    finally:
        sensor_stop.set()
        if dongle is not None:
            dongle.stop()
        children.stop(["simulator", *KAFKA_CLIENTS])
        for server in (kafka.server if kafka else None, mqtt):
            if server is not None:
                server.stop()
        shutil.rmtree(work, ignore_errors=True)
        print("stopped", flush=True)


async def _main(kafka: Kafka, children: Children, view: LiveView, duration: float | None, kafka_mb: float,
                logs: Path, stop: asyncio.Event, rotate: asyncio.Event) -> int:
    """Signals handled from here to the end (`wattstream.signals`): INT/TERM/HUP set `stop` (once the snapshot
    is restored, and then the final snapshot is taken), USR1 toggles debug logs here and in every child, USR2
    sets `rotate` (Kafka is rotated)."""
    loop = asyncio.get_running_loop()
    await kafka.restore()
    if stop.is_set():  # stopped while it restored: the snapshot again, nothing started
        return 0 if await kafka.take() else 1
    if duration is not None:
        loop.call_later(duration, stop.set)
    children.start("simulator")
    kafka.start_clients(children)
    print("worker, bridges, charger, simulated meters (IAMMETER, Acrel, EVN, Shelly, OpenDTU, DSMR P1, a PV site "
          f"with a car; line sensor and Wi-SUN dongle on ptys) up; logs in {logs}/", flush=True)
    print("Ctrl-C stops; kill -USR1 toggles debug logs, kill -USR2 rotates Kafka", flush=True)
    shown = asyncio.create_task(show(view, children.exited, stop))
    watching = asyncio.create_task(watch(kafka.server.address, view))
    try:
        while not stop.is_set():
            await first_of(stop.wait(), rotate.wait(), within=ROTATE_CHECK_SECONDS)
            if kafka.server.proc.poll() is not None:
                print(f"!! Tansu exited with {kafka.server.proc.returncode}; see {kafka.server.log}", flush=True)
                stop.set()
            elif not stop.is_set() and (rotate.is_set() or kafka.due(kafka_mb)):
                rotate.clear()
                watching.cancel()
                await kafka.rotate(children)
                watching = asyncio.create_task(watch(kafka.server.address, view))
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        stop.set()
        await shown
    await asyncio.to_thread(children.stop, ["simulator"])
    await kafka.stop_clients(children)
    return 0 if await kafka.take() else 1
