"""`wattstream bench --latency`: how long a grid meter's reading takes to reach the charger.

From the MQTT publish of a grid meter's IAMMETER payload to the MQTT message a `wattstream`-format
charger receives, through the real processes: the MQTT bridge, the worker and `wattstream charger`, on
Tansu and mosquitto (amqtt where mosquitto is missing) started here, the files sink. The grid meter
publishes `--rate` times a second, each payload with a power of its own, so each charger message (its
`grid_w`) names the publish it answers; `--others N` meters publish once a second besides (the load
of an energy community). Prints p50/p90/p99/max, and how many publishes got no answer.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as mqtt

from bridges.simulate import SimulatedIammeter
from pipeline.embedded.children import spawn, stop_child
from pipeline.embedded.servers import start_mqtt_broker, start_tansu
from pipeline.models import SurplusSignal

SITE, GRID = "bench", "B0000001"
SIGNALS = f"wattstream/{SITE}/surplus"
WARM_UP_SECONDS = 180.0


def meters_toml() -> str:
    return (f'[[meter]]\ndriver = "iammeter"\ndevice = "{GRID}"\nrole = "grid"\nsite = "{SITE}"\n\n'
            f'[[site]]\nname = "{SITE}"\n\n'
            f'[[charger]]\nname = "car"\nsite = "{SITE}"\nformat = "wattstream"\ninterval_seconds = 0\n')


class Answers:
    """The charger messages as they arrive: grid power → when (monotonic)."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self.any = threading.Event()

    def on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        self.at.setdefault(round(SurplusSignal.from_json(message.payload).grid_w), now)
        self.any.set()


def _client(port: int, name: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{name}-{os.getpid()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _others(port: int, count: int, stop: threading.Event) -> None:
    """`count` meters, each publishing once a second, spread over the second: each the same payload every
    time (made once: the load on this machine is the pipeline's, not the simulator's)."""
    if not count:
        return
    client = _client(port, "others")
    meters = [SimulatedIammeter(f"L{i:07d}", phases=3 if i % 2 else 1, seed=i) for i in range(count)]
    messages = [(f"device/{m.sn}/realtime", m.payload(datetime.now().astimezone(), 1.0)) for m in meters]
    started = time.monotonic()
    i = 0
    try:
        while not stop.is_set():
            due = started + i / count
            if (delay := due - time.monotonic()) > 0:
                time.sleep(delay)
            client.publish(*messages[i % count])
            i += 1
    finally:
        client.loop_stop()
        client.disconnect()


def run_latency(seconds: float, rate: float, others: int) -> int:
    work = Path(tempfile.mkdtemp(prefix="wattstream-latency-"))
    servers, children = [], {}
    stop = threading.Event()
    clients: list[mqtt.Client] = []
    power = [0.0]
    grid = SimulatedIammeter(GRID, phases=1, powers=lambda: power)
    try:
        servers.append(tansu := start_tansu(work / "tansu"))
        servers.append(broker := start_mqtt_broker(work / "mqtt"))
        (work / "meters.toml").write_text(meters_toml())
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("WATTSTREAM_")},  # the files sink
               "WATTSTREAM_KAFKA_BOOTSTRAP": tansu.address, "WATTSTREAM_MQTT_HOST": "127.0.0.1",
               "WATTSTREAM_MQTT_PORT": str(broker.port), "WATTSTREAM_METERS_FILE": str(work / "meters.toml"),
               "WATTSTREAM_FILES_DIR": str(work / "files")}
        (work / "logs").mkdir()
        for name, argv in (("worker", ["worker"]), ("bridge", ["bridge", "mqtt"]), ("charger", ["charger"])):
            children[name] = spawn(name, argv, env, work / "logs", cwd=work)  # no .env of the caller
        answers = Answers()
        clients.append(listener := _client(broker.port, "charger"))
        listener.on_message = answers.on_message
        listener.subscribe(SIGNALS, qos=1)
        clients.append(meter := _client(broker.port, "grid"))

        def publish(watts: int) -> float:
            power[0] = float(watts)
            sent = time.monotonic()
            meter.publish(f"device/{GRID}/realtime", grid.payload(datetime.now().astimezone(), 1 / rate))
            return sent

        warm = time.monotonic()
        while not answers.any.wait(0.5):  # the worker and the charger are up and have seen the grid meter
            publish(-1)
            if time.monotonic() - warm > WARM_UP_SECONDS:
                raise SystemExit(f"no charger message within {WARM_UP_SECONDS:.0f} s; see the logs in {work}/logs")
        threading.Thread(target=_others, args=(broker.port, others, stop), daemon=True).start()
        time.sleep(min(10.0, seconds / 3))  # the others' backlog at the start is not the steady state
        sent: dict[int, float] = {}
        first = time.monotonic()
        for i in range(int(seconds * rate)):
            if (delay := first + i / rate - time.monotonic()) > 0:
                time.sleep(delay)
            watts = -2000 - i  # each publish a power of its own: the answer names it
            sent[watts] = publish(watts)
        deadline = time.monotonic() + 10
        while len(set(sent) & set(answers.at)) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
        latencies = sorted((answers.at[w] - t) * 1000 for w, t in sent.items() if w in answers.at)
        _report(latencies, len(sent), rate, others)
        if latencies:
            shutil.rmtree(work, ignore_errors=True)  # else the logs stay for a look
        return 0 if latencies else 1
    finally:
        stop.set()
        for client in clients:
            client.loop_stop()
            client.disconnect()
        for proc in children.values():
            stop_child(proc)
        for server in reversed(servers):
            server.stop()


def _report(latencies: list[float], published: int, rate: float, others: int) -> None:
    def q(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    print(f"latency, grid meter MQTT publish → wattstream charger MQTT message ({rate:g}/s, "
          f"{others} other meters at 1/s, {os.cpu_count()} cores)")
    if latencies:
        print(f"  p50 {statistics.median(latencies):.0f} ms  p90 {q(0.9):.0f} ms  p99 {q(0.99):.0f} ms  "
              f"max {latencies[-1]:.0f} ms   ({len(latencies)} of {published} answered)")
    else:
        print(f"  no answer to any of {published} publishes")
