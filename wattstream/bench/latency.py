"""`wattstream bench --latency`: how long a grid meter's reading takes to reach the charger.

From the MQTT publish of a grid meter's IAMMETER payload to the MQTT message a `wattstream`-format
charger receives, through the real processes: the MQTT bridge, the worker and `wattstream charger`, on
Tansu and mosquitto (amqtt where mosquitto is missing) started here, the files sink. The grid meter
publishes `--rate` times a second, each payload with a power of its own, so each charger message (its
`grid_w`) names the publish it answers; `--others N` meters publish once a second besides (the load
of an energy community). Prints p50/p90/p99/max, and how many publishes got no answer; then where the
time went, hop by hop, from the time stamps of the Kafka records the publish became (each stamped when
its producer took it: the raw record by the bridge, the site reading by the decode agent, the signal
by the surplus agent).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaConsumer, TopicPartition
from paho.mqtt.enums import CallbackAPIVersion

from bridges.follow import read_to_end
from pipeline import envelope, topics
from pipeline.drivers import iammeter
from pipeline.models import Reading, SurplusSignal
from simulators.meters import SimulatedIammeter
from wattstream.bench import load
from wattstream.bench.profile import start_profiler, summarize_profile
from wattstream.embedded.children import spawn, stop_child
from wattstream.embedded.servers import start_mqtt_broker, start_tansu

SITE, GRID = "bench", "B0000001"
PATH = (topics.raw_topic("iammeter"), topics.SITE_READINGS, topics.SURPLUS)  # the records a publish becomes
SIGNALS = f"wattstream/{SITE}/surplus"
WARM_UP_SECONDS = 180.0
STALL_SECONDS = 30.0  # reading back the records of the path (for the hops) fails when none comes for this long


def meters_toml() -> str:
    return (f'[[meter]]\ndriver = "iammeter"\ndevice = "{GRID}"\nrole = "grid"\nsite = "{SITE}"\n\n'
            f'[[site]]\nname = "{SITE}"\n\n'
            f'[[charger]]\nname = "car"\nsite = "{SITE}"\nformat = "wattstream"\ninterval_seconds = 0\n')


class Answers:
    """The charger messages as they arrive: grid power → when (monotonic, and wall clock for the hops)."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self.wall: dict[int, float] = {}
        self.any = threading.Event()

    def on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        now, wall = time.monotonic(), time.time()
        watts = round(SurplusSignal.from_json(bytes(message.payload)).grid_w)
        self.at.setdefault(watts, now)
        self.wall.setdefault(watts, wall)
        self.any.set()


def _client(port: int, name: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{name}-{os.getpid()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def run_latency(seconds: float, rate: float, others: int, profile: bool = False) -> int:
    work = Path(tempfile.mkdtemp(prefix="wattstream-latency-"))
    servers, children = [], {}
    stop = threading.Event()
    loading: threading.Thread | None = None
    spy: subprocess.Popen[bytes] | None = None
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
               "WATTSTREAM_FILES_DIR": str(work / "files"),
               "WATTSTREAM_WORKER_METRICS_PORT": "0",  # (a worker running beside would have the port)
               # Tansu holds a fresh group's first join for half the rebalance timeout: not measured here
               "WATTSTREAM_WORKER_REBALANCE_TIMEOUT": "6"}
        (work / "logs").mkdir()
        for name, argv in (("worker", ["worker"]), ("bridge", ["bridge", "mqtt"]), ("charger", ["charger"])):
            children[name] = spawn(name, argv, env, work / "logs", cwd=work)  # no .env of the caller
        answers = Answers()
        clients.append(listener := _client(broker.port, "charger"))
        listener.on_message = answers.on_message
        listener.subscribe(SIGNALS, qos=1)
        clients.append(meter := _client(broker.port, "grid"))

        sent_wall: dict[int, float] = {}

        def publish(watts: int) -> float:
            power[0] = float(watts)
            sent, sent_wall[watts] = time.monotonic(), time.time()
            meter.publish(f"device/{GRID}/realtime", grid.payload(datetime.now().astimezone(), 1 / rate))
            return sent

        warm = time.monotonic()
        while not answers.any.wait(0.5):  # the worker and the charger are up and have seen the grid meter
            publish(-1)
            if time.monotonic() - warm > WARM_UP_SECONDS:
                raise SystemExit(f"no charger message within {WARM_UP_SECONDS:.0f} s; see the logs in {work}/logs")
        loading = threading.Thread(target=load.others, args=(broker.port, others, stop), daemon=True)
        loading.start()
        time.sleep(min(10.0, seconds / 3))  # the others' backlog at the start is not the steady state
        spy = start_profiler(children["worker"].pid, int(seconds), work / "profile.txt") if profile else None
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
        by_index = {-2000 - w: (answers.at[w] - t) * 1000 for w, t in sent.items() if w in answers.at}
        latencies = sorted(by_index.values())
        _report(latencies, len(sent), rate, others)
        if (minutes := _per_minute(by_index, rate)) is not None:
            print(minutes)
        stamps, loaded = asyncio.run(_kafka_stamps(tansu.address))
        print(_hops({w: sent_wall[w] for w in sent}, stamps, answers.wall))
        print(f"load: {loaded:,} payloads of the other meters reached {topics.raw_topic('iammeter')}")
        if spy is not None and spy.wait() == 0 and (work / "profile.txt").exists():
            print(summarize_profile(work / "profile.txt"))
        spy = None
        if latencies:
            shutil.rmtree(work, ignore_errors=True)  # else the logs stay for a look
        return 0 if latencies else 1
    finally:
        stop.set()
        if loading is not None:
            loading.join(5)  # its DISCONNECT before the broker goes
        if spy is not None:
            spy.terminate()
        for client in clients:
            client.loop_stop()
            client.disconnect()
        for proc in children.values():
            stop_child(proc)
        for server in reversed(servers):
            server.stop()


def _quantile(ordered: list[float], p: float) -> float:
    """The value at rank ⌊p·n⌋ of the sorted values (so with 100 values or fewer, p99 is the largest)."""
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def _per_minute(latency: dict[int, float], rate: float) -> str | None:
    """p50 / p99 of each minute of the run (publish `i` falls in minute `i / rate // 60`), when it ran for
    more than one: figures that grow from minute to minute tell a system that does not keep up."""
    minutes: dict[int, list[float]] = defaultdict(list)
    for i, ms in latency.items():
        minutes[int(i / rate // 60)].append(ms)
    if len(minutes) < 2:
        return None
    return "  per minute, p50 / p99 (ms): " + ", ".join(
        f"{minute + 1}: {statistics.median(values):.0f} / {_quantile(sorted(values), 0.99):.0f}"
        for minute, values in sorted(minutes.items()))


def _report(latencies: list[float], published: int, rate: float, others: int) -> None:
    print(f"latency, grid meter MQTT publish → wattstream charger MQTT message ({rate:g}/s, "
          f"{others} other meters at 1/s, {os.cpu_count()} cores)")
    if latencies:
        print(f"  p50 {statistics.median(latencies):.0f} ms  p90 {_quantile(latencies, 0.9):.0f} ms  "
              f"p99 {_quantile(latencies, 0.99):.0f} ms  max {latencies[-1]:.0f} ms   "
              f"({len(latencies)} of {published} answered)")
    else:
        print(f"  no answer to any of {published} publishes")


async def _kafka_stamps(bootstrap: str) -> tuple[dict[str, dict[int, float]], int]:
    """Per topic of the path (raw, site readings, signals): the grid meter's power → its record's time
    stamp (s); and how many payloads of other meters the raw topic has."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    stamps: dict[str, dict[int, float]] = {name: {} for name in PATH}
    loaded = 0
    try:
        await consumer.topics()
        starts = {TopicPartition(name, p): 0 for name in PATH for p in consumer.partitions_for_topic(name) or ()}
        async for tp, record in read_to_end(consumer, {"bootstrap_servers": bootstrap}, starts, STALL_SECONDS):
            if tp.topic == PATH[0]:  # the raw topic
                items = envelope.items(record.key, record.value, dict(record.headers))
                grid = [item.value for item in items if item.key == GRID.encode()]
                loaded += len(items) - len(grid)
                powers = [_power(r) for payload in grid
                          for r in iammeter.decode(payload, received_at=datetime.now().astimezone())]
            elif tp.topic == topics.SITE_READINGS:
                reading = Reading.from_json(record.value)
                powers = [_power(reading)] if reading.meter_id == f"iammeter:{GRID}" else []
            else:
                powers = [round(SurplusSignal.from_json(record.value).grid_w)]
            for watts in powers:
                stamps[tp.topic].setdefault(watts, record.timestamp / 1000)
    finally:
        await consumer.stop()
    return stamps, loaded


def _power(reading: Reading) -> int:
    return round(reading.total.power_w or 0)


def _hops(sent: dict[int, float], stamps: dict[str, dict[int, float]], answered: dict[int, float]) -> str:
    """p50 / p99 of each hop, in ms, over the publishes seen at every stamp."""
    path = [sent, *(stamps[name] for name in PATH), answered]
    names = ["MQTT → bridge's raw record", "→ decode agent's site reading", "→ surplus agent's signal",
             "→ charger's MQTT message"]
    seen = [w for w in sent if all(w in stamp for stamp in path)]
    if not seen:
        return "hops: no publish was seen at every stamp"
    lines = [f"where the time went ({len(seen)} publishes; p50 / p99 per hop, ms):"]
    for name, before, after in zip(names, path, path[1:], strict=False):
        spans = sorted((after[w] - before[w]) * 1000 for w in seen)
        lines.append(f"  {name:32} {statistics.median(spans):7.0f} {_quantile(spans, 0.99):7.0f}")
    return "\n".join(lines)
