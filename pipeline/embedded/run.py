"""`wattstream run`: the whole pipeline on one machine, no Docker, no root.

Starts Tansu and an MQTT broker (mosquitto if installed, else amqtt) on local ports, then the worker,
the MQTT bridge, the simulated meters, a serial bridge reading a simulated line sensor and a B-route
bridge driving a simulated RL7023 dongle (each on a pseudo-terminal), and the charger bridge driving
the simulated site's car (plus an OpenEVSE and a go-e topic to look at), as child processes (logs
under `<files dir>/logs/`), and shows live in the terminal what flows through `meter.readings`,
`power.surplus` and `meter.deadletter`.
INT/TERM/HUP stop everything in order; USR1 toggles debug logging in every process.
With `WATTSTREAM_INFLUX_URL` set the worker writes to that InfluxDB, else to the daily files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from bridges.rl7023_sim import SimulatedRl7023
from bridges.simulate import demo_meters_toml, run_line_sensor
from pipeline import topics
from pipeline.embedded.servers import Server, port_is_free, start_mqtt_broker, start_tansu
from pipeline.models import Reading, SurplusSignal
from pipeline.settings import Settings
from pipeline.worker import toggle_debug

STATUS_EVERY = 5.0
DEMO_BROUTE_ID = "00000000000000000000000000000000"  # the simulated dongle's; real ones come from the utility
DEMO_BROUTE_PASSWORD = "DEMOPASSWORD"


def _preferred(port: int) -> int | None:
    """The usual port when it is free (so real meters can be pointed at it), else any free one."""
    return port if port_is_free(port) else None


class LiveView:
    """Counts what the pipeline produces and prints a short status block every few seconds."""

    def __init__(self, sink: str) -> None:
        self.sink = sink
        self.readings = 0
        self.last: dict[str, Reading] = {}
        self.dead: Counter[str] = Counter()
        self.surplus: dict[str, SurplusSignal] = {}
        self._since = (time.monotonic(), 0)

    def on_reading(self, value: bytes) -> None:
        self.readings += 1
        reading = Reading.from_json(value)
        if reading.total.power_w is not None:  # Acrel's second message of a pair has no power
            self.last[reading.meter_id] = reading

    def on_surplus(self, value: bytes) -> None:
        signal = SurplusSignal.from_json(value)
        self.surplus[signal.site] = signal

    def on_dead(self, headers: dict[str, bytes]) -> None:
        self.dead[headers.get(topics.H_STAGE, b"?").decode()] += 1

    def render(self) -> str:
        now = time.monotonic()
        then, count = self._since
        rate = (self.readings - count) / max(now - then, 1e-9)
        self._since = (now, self.readings)
        dead = ", ".join(f"{stage} {n}" for stage, n in self.dead.items()) or "0"
        lines = [f"{time.strftime('%H:%M:%S')}  readings {self.readings} ({rate:.1f}/s) → {self.sink}"
                 f"   dead letters {dead}"]
        for meter_id, reading in sorted(self.last.items()):
            total = reading.total
            phases = " ".join(f"{p} {v.power_w:+.0f} W" for p, v in reading.phases.items()
                              if v.power_w is not None)
            power = f"{total.power_w:+8.0f} W" if total.power_w is not None else "       ? W"
            energy = (f"  in {total.energy_import_wh / 1000:.3f} kWh" if total.energy_import_wh is not None
                      else "")
            lines.append(f"    {meter_id:<22} {power}{energy}  {phases}  @ {reading.ts:%H:%M:%S}")
        for site, s in sorted(self.surplus.items()):
            car = f"charging {s.phases}p {s.current_a:.0f} A ({s.power_w:.0f} W)" if s.charge else "not charging"
            lines.append(f"    site {site}: surplus {s.surplus_w:+.0f} W, {car} — {s.reason}")
        return "\n".join(lines)


async def _watch(bootstrap: str, view: LiveView, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(topics.READINGS, topics.SURPLUS, topics.DEADLETTER, bootstrap_servers=bootstrap,
                                auto_offset_reset="latest", enable_auto_commit=False)
    while not stop.is_set():
        try:
            await consumer.start()
            break
        except KafkaError:
            await asyncio.sleep(1)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    if tp.topic == topics.READINGS:
                        view.on_reading(record.value)
                    elif tp.topic == topics.SURPLUS:
                        view.on_surplus(record.value)
                    else:
                        view.on_dead(dict(record.headers))
    finally:
        await consumer.stop()


async def _show(view: LiveView, children: dict[str, subprocess.Popen[bytes]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), STATUS_EVERY)
        print(view.render(), flush=True)
        for name, proc in children.items():
            if proc.poll() is not None:
                print(f"!! {name} exited with {proc.returncode}; see its log", flush=True)
                stop.set()


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


def spawn(name: str, argv: list[str], env: dict[str, str], logs: Path,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """`wattstream <argv>` as a child in a session of its own, output to `<logs>/<name>.log`; `cwd` (default:
    ours) is where its settings look for a `.env`."""
    with (logs / f"{name}.log").open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "pipeline", *argv], env=env, stdout=out, cwd=cwd,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def run_embedded(settings: Settings, interval: float, duration: float | None) -> int:
    logs = settings.files.dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="wattstream-"))
    servers: list[Server] = []
    children: dict[str, subprocess.Popen[bytes]] = {}
    sensor_stop = threading.Event()
    dongle: SimulatedRl7023 | None = None
    try:
        servers.append(kafka := start_tansu(work / "tansu", _preferred(9092)))
        servers.append(mqtt := start_mqtt_broker(work / "mqtt", _preferred(1883)))
        print(f"Kafka (Tansu) on {kafka.address}, MQTT ({mqtt.name}) on {mqtt.address}", flush=True)
        env = {
            **os.environ,
            "WATTSTREAM_KAFKA_BOOTSTRAP": kafka.address,
            "WATTSTREAM_MQTT_HOST": "127.0.0.1",
            "WATTSTREAM_MQTT_PORT": str(mqtt.port),
            "WATTSTREAM_WORKER_SESSION_TIMEOUT": os.environ.get("WATTSTREAM_WORKER_SESSION_TIMEOUT", "6"),
            "WATTSTREAM_WORKER_REBALANCE_TIMEOUT": os.environ.get("WATTSTREAM_WORKER_REBALANCE_TIMEOUT", "6"),
        }
        env["WATTSTREAM_METERS_FILE"] = str(_meters_with_simulated(settings, work))
        sink = f"InfluxDB {settings.influx.url}" if settings.influx.url else (
            f"files {settings.files.dir}/YYYYMMDD-{settings.files.name}.txt")
        children["worker"] = spawn("worker", ["worker"], env, logs)
        children["bridge"] = spawn("bridge", ["bridge", "mqtt"], env, logs)
        children["simulator"] = spawn("simulator", ["simulate", "--interval", str(interval)],
                                       env, logs)
        sensor_fd, sensor_port = _pty()
        threading.Thread(target=run_line_sensor, args=(sensor_fd, interval, sensor_stop), daemon=True).start()
        children["serial"] = spawn("serial", ["bridge", "serial", "--port", sensor_port, "--device", "garden"],
                                    env, logs)
        dongle_fd, dongle_port = _pty()
        dongle = SimulatedRl7023(dongle_fd, route_id=DEMO_BROUTE_ID, password=DEMO_BROUTE_PASSWORD).start()
        broute_env = {**env, "WATTSTREAM_BROUTE_ID": DEMO_BROUTE_ID, "WATTSTREAM_BROUTE_PASSWORD": DEMO_BROUTE_PASSWORD,
                      "WATTSTREAM_BROUTE_DEVICE": "sim-jp",
                      "WATTSTREAM_BROUTE_POLLS": '[[["E7", "E8"], 10], [["E0", "E3"], 30], [["D3", "D7", "E1"], 60]]'}
        children["broute"] = spawn("broute", ["bridge", "broute", "--port", dongle_port], broute_env, logs)
        children["charger"] = spawn("charger", ["charger"], env, logs)
        print("worker, bridges, charger, simulated meters (IAMMETER, Acrel, EVN, a PV site with a car; line sensor "
              "and Wi-SUN dongle on ptys) up; "
              f"logs in {logs}/", flush=True)
        print("Ctrl-C stops; kill -USR1 toggles debug logs", flush=True)
        asyncio.run(_supervise(kafka.address, LiveView(sink), children, duration))
        return 0
    finally:
        sensor_stop.set()
        if dongle is not None:
            dongle.stop()
        for name in ("charger", "simulator", "serial", "broute", "bridge", "worker"):
            if name in children:
                stop_child(children[name])
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
        print("stopped", flush=True)


async def _supervise(bootstrap: str, view: LiveView, children: dict[str, subprocess.Popen[bytes]],
                     duration: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)

    def usr1() -> None:
        toggle_debug()
        for proc in children.values():
            proc.send_signal(signal.SIGUSR1)

    loop.add_signal_handler(signal.SIGUSR1, usr1)
    if duration is not None:
        loop.call_later(duration, stop.set)
    await asyncio.gather(_watch(bootstrap, view, stop), _show(view, children, stop))


def stop_child(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
