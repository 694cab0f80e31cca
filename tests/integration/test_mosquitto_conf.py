"""The mosquitto.conf and acl compose mounts, run by the real Debian mosquitto with the password file that
compose's `mqtt-users` script writes (run here as it is): nobody gets in without an account, a meter
publishes its readings but no charger's topic, a reader reads what wattstream publishes, and while the
bridge's persistent session is away the broker keeps the meters' QoS 0 messages — more than mosquitto's
default of 1000 — and hands them over when the bridge is back, and those the bridge held when it was
killed come again. With tls.conf.example and certificates
from `scripts/mqtt-certs`, wattstream's MQTT clients reach the broker over TLS."""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import paho.mqtt.publish as publish
import pytest
import yaml

from bridges.mqtt import new_client, publishing_client
from pipeline.brokers import MqttSettings
from tests.conftest import Process
from tests.kafka import raw_values
from tests.mqtt import bridge_env, certificates
from wattstream.embedded.servers import Server, free_port, start_mosquitto

ROOT = Path(__file__).parent.parent.parent
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
PASSWORDS = {"wattstream": "stack-secret", "meter": "meter-secret", "reader": "reader-secret",
             "control": "control-secret"}
MESSAGES = 3000
KILL_MESSAGES, BURST = 2000, 20


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Server]:
    # mosquitto started as root reads its files as the user `mosquitto`: not from pytest's private tmp
    auth = Path(tempfile.mkdtemp(prefix="wattstream-mqtt-auth-"))
    auth.chmod(0o755)
    try:
        write_password_file(auth)
        (auth / "conf.d").mkdir()  # as shipped (no *.conf), whatever this checkout has in its conf.d
        server = start_mosquitto(tmp_path / "data", config=(ROOT / "mosquitto" / "mosquitto.conf").read_text(),
                                 mounts={"/mosquitto/config/conf.d": auth / "conf.d",
                                         "/mosquitto/config": ROOT / "mosquitto", "/mosquitto/auth": auth})
        yield server
        server.stop()
    finally:
        shutil.rmtree(auth, ignore_errors=True)


def write_password_file(auth: Path) -> None:
    """Compose's `mqtt-users` script as it is (`$$` is compose's escape of `$`), into `auth`."""
    script = COMPOSE["services"]["mqtt-users"]["command"][2].replace("$$", "$").replace("/auth/", f"{auth}/")
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "MQTT_PASSWORD": PASSWORDS["wattstream"],
           "METER_MQTT_PASSWORD": PASSWORDS["meter"], "READER_MQTT_PASSWORD": PASSWORDS["reader"],
           "CONTROL_MQTT_PASSWORD": PASSWORDS["control"]}
    subprocess.run(["sh", "-c", script], env=env, check=True)
    assert {line.split(":")[0] for line in (auth / "passwd").read_text().splitlines()} == set(PASSWORDS)


def connect(port: int, user: str | None, *, client_id: str = "", clean: bool = True,
            received: list[tuple[str, bytes]] | None = None) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    if user is not None:
        client.username_pw_set(user, PASSWORDS[user])
    connected = threading.Event()
    outcome: list[mqtt.ReasonCode] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: (outcome.append(reason), connected.set())
    if received is not None:
        client.on_message = lambda _c, _u, message: received.append((message.topic, message.payload))
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert connected.wait(10), "no CONNACK"
    if outcome[0].is_failure:
        client.loop_stop()
        raise PermissionError(str(outcome[0]))
    return client


def until(condition: Callable[[], bool], seconds: float) -> None:
    """Until `condition` holds or `seconds` passed (the assertions after it say which)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def subscribe(client: mqtt.Client, pattern: str, qos: int = 1) -> None:
    done = threading.Event()
    client.on_subscribe = lambda *_: done.set()
    client.subscribe(pattern, qos=qos)
    assert done.wait(10), "no SUBACK"


def test_nobody_without_an_account(broker: Server) -> None:
    with pytest.raises(PermissionError, match=r"[Nn]ot authorized"):
        connect(broker.port, None)


def test_a_meter_publishes_readings_but_no_charger_topic_and_a_reader_reads_decisions(broker: Server) -> None:
    stack_seen: list[tuple[str, bytes]] = []
    reader_seen: list[tuple[str, bytes]] = []
    stack, reader = connect(broker.port, "wattstream", received=stack_seen), connect(broker.port, "reader",
                                                                                     received=reader_seen)
    subscribe(stack, "#")
    subscribe(reader, "#")
    meter = connect(broker.port, "meter")
    for topic, payload in (("wattstream/home/surplus", b"forged decision"), ("/go-eCharger/000123/ids/set", b"{}"),
                           ("homeassistant/sensor/x/config", b"{}"), ("wattstream/home/car/mode/set", b"now"),
                           ("device/M1/realtime", b"reading")):
        meter.publish(topic, payload, qos=1).wait_for_publish(10)
    # a charger (a reader) may set no mode; Home Assistant (control) sets one, and may not forge a decision
    reader.publish("wattstream/home/car/mode/set", b"now", qos=1).wait_for_publish(10)
    control = connect(broker.port, "control")
    for topic, payload in (("wattstream/home/surplus", b"forged by HA"), ("wattstream/home/car/mode/set", b"pv"),
                           ("wattstream/home/car/target/set", b"10")):
        control.publish(topic, payload, qos=1).wait_for_publish(10)
    stack.publish("wattstream/home/surplus", b"decision", qos=1).wait_for_publish(10)
    until(lambda: b"decision" in [p for _, p in reader_seen] and b"decision" in [p for _, p in stack_seen],
          10)  # the stack's own decision, sent last, has reached both
    assert ("device/M1/realtime", b"reading") in stack_seen  # the meter's reading reaches wattstream
    assert [(t, p) for t, p in stack_seen if p != b"reading"] == [
        ("wattstream/home/car/mode/set", b"pv"), ("wattstream/home/car/target/set", b"10"),
        ("wattstream/home/surplus", b"decision")]  # none of the forged ones
    assert [(t, p) for t, p in reader_seen if "/set" not in t] == [("wattstream/home/surplus", b"decision")]
    for client in (stack, reader, meter, control):
        client.disconnect()
        client.loop_stop()


def test_the_stack_account_reads_the_uptime_the_healthcheck_asks_for(broker: Server) -> None:
    """Compose's healthcheck is `mosquitto_sub -u wattstream ... -t '$SYS/broker/uptime' -C 1`: `#` in the
    ACL does not cover `$SYS`, so without its own line the broker would never be healthy."""
    test = COMPOSE["services"]["mosquitto"]["healthcheck"]["test"][1]
    topic = re.search(r"-t '([^']+)'", test)
    assert topic is not None and "-u wattstream" in test
    seen: list[tuple[str, bytes]] = []
    stack = connect(broker.port, "wattstream", received=seen)
    subscribe(stack, topic.group(1).replace("$$", "$"))
    until(lambda: bool(seen), 10)
    stack.disconnect()
    stack.loop_stop()
    assert seen and seen[0][0] == "$SYS/broker/uptime", "the healthcheck's topic never arrived"


def test_the_broker_keeps_qos0_messages_for_an_absent_bridge(broker: Server) -> None:
    """(Subscribed at QoS 0, so the queue of QoS 0 messages is what is shown, not the upgrade to QoS 1.)"""
    received: list[tuple[str, bytes]] = []
    bridge = connect(broker.port, "wattstream", client_id="conf-test-bridge", clean=False, received=received)
    subscribe(bridge, "device/+/realtime", qos=0)
    bridge.disconnect()
    bridge.loop_stop()
    publish.multiple([{"topic": f"device/M{i % 10}/realtime", "payload": str(i), "qos": 0} for i in range(MESSAGES)],
                     hostname="127.0.0.1", port=broker.port, auth={"username": "meter", "password": PASSWORDS["meter"]})
    bridge = connect(broker.port, "wattstream", client_id="conf-test-bridge", clean=False, received=received)
    try:
        until(lambda: len(received) >= MESSAGES, 30)
        assert len(received) == MESSAGES, f"{len(received)} of {MESSAGES} QoS 0 messages kept for the absent bridge"
    finally:
        bridge.disconnect()
        bridge.loop_stop()
    assert sorted(int(p) for _, p in received) == list(range(MESSAGES))


def test_qos0_messages_the_bridge_held_when_killed_come_again(broker: Server, tansu: Server, tmp_path: Path) -> None:
    """Most meters publish with QoS 0. The broker delivers them to the bridge's QoS 1 subscription at QoS 1
    (`upgrade_outgoing_qos`) and keeps each until the bridge acknowledges it, after Kafka has it: the
    bridge SIGKILLed right after a burst of messages (so it holds some), three times at seeded moments,
    and started again while the meter goes on publishing, leaves none of them out of Kafka."""
    seed = random.SystemRandom().randrange(10**6)
    rng = random.Random(seed)
    env = bridge_env(tansu.address, broker.port, "bridge-killed", WATTSTREAM_MQTT_USERNAME="wattstream",
                     WATTSTREAM_MQTT_PASSWORD=PASSWORDS["wattstream"])
    bodies = [b'{"SN":"0A0A0A0A","Data":[230,1,%d,1,0,50,1]}' % i for i in range(KILL_MESSAGES)]
    kills = sorted(rng.sample(range(BURST, KILL_MESSAGES - 2 * BURST, BURST), 3))  # where a burst starts
    meter, bridge = connect(broker.port, "meter"), None
    try:
        bridge = Process("bridge-0", ["bridge", "mqtt"], env, tmp_path)
        bridge.wait_for("MQTT subscribed")
        for start in range(0, KILL_MESSAGES, BURST):
            if start in kills:
                bridge.wait_for("MQTT subscribed")  # (the one started after the last kill)
            for body in bodies[start:start + BURST]:
                meter.publish("device/0A0A0A0A/realtime", body, qos=0).wait_for_publish(10)
            if start in kills:  # right after a burst: the bridge holds messages Kafka has not confirmed
                bridge.proc.kill()
                bridge.proc.wait()
                bridge = Process(f"bridge-{kills.index(start) + 1}", ["bridge", "mqtt"], env, tmp_path)
            else:
                time.sleep(0.1)  # the meters' pace (200 messages a second), not a wait for anything
        values = set(asyncio.run(raw_values(tansu.address, KILL_MESSAGES, within=90, distinct=True)))
        assert not [b for b in bodies if b not in values], (
            f"seed {seed}: {len(set(bodies) - values)} of {KILL_MESSAGES} QoS 0 messages lost "
            f"by SIGKILLs of the bridge after the bursts at messages {kills}")
        assert "came with QoS 0" not in "".join(p.read_text() for p in tmp_path.glob("bridge-*.log"))
    finally:
        if bridge is not None:
            bridge.stop()
        meter.disconnect()
        meter.loop_stop()


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Server, int, Path]]:
    """Compose's conf with tls.conf.example where its `include_dir` takes it from (conf.d/), certificates for
    127.0.0.1 from `scripts/mqtt-certs`; the broker, its TLS port and the certificates' directory."""
    shared = Path(tempfile.mkdtemp(prefix="wattstream-mqtt-tls-"))
    shared.chmod(0o755)
    try:
        auth = shared / "auth"
        auth.mkdir()
        write_password_file(auth)
        certs = certificates(shared, owner="mosquitto")  # Debian's mosquitto drops to this user
        include = "include_dir /mosquitto/config/conf.d"
        config = (ROOT / "mosquitto" / "mosquitto.conf").read_text()
        assert include in config
        tls_port = free_port()
        server = start_mosquitto(tmp_path / "data",
                                 config=config.replace(include, (ROOT / "mosquitto" / "tls.conf.example").read_text()),
                                 mounts={"/mosquitto/config/certs": certs, "/mosquitto/config": ROOT / "mosquitto",
                                         "/mosquitto/auth": auth}, listeners={8883: tls_port})
        yield server, tls_port, certs
        server.stop()
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def over_tls(port: int, user: str, certs: Path | None) -> MqttSettings:
    return MqttSettings(host="127.0.0.1", port=port, username=user, password=PASSWORDS[user], tls=True,
                        ca_file=certs / "ca.crt" if certs else None)


def test_wattstreams_clients_reach_the_broker_over_tls(tls_broker: tuple[Server, int, Path]) -> None:
    _, port, certs = tls_broker
    seen: list[tuple[str, bytes]] = []
    subscribed = threading.Event()
    stack = new_client(over_tls(port, "wattstream", certs), "tls-test-stack")
    stack.on_connect = lambda c, *_: c.subscribe("device/+/realtime", qos=1)
    stack.on_subscribe = lambda *_: subscribed.set()
    stack.on_message = lambda _c, _u, message: seen.append((message.topic, message.payload))
    stack.connect("127.0.0.1", port)
    stack.loop_start()
    meter = publishing_client(over_tls(port, "meter", certs), "tls-test-meter")  # as `publish` and `charger` do
    try:
        assert subscribed.wait(10), "the stack's client did not get in over TLS"
        meter.publish("device/M1/realtime", b"over tls", qos=1).wait_for_publish(10)
        until(lambda: bool(seen), 10)
        assert seen == [("device/M1/realtime", b"over tls")]
    finally:
        for client in (stack, meter):
            client.disconnect()
            client.loop_stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # paho drops the failed socket
def test_tls_refuses_a_broker_certificate_of_another_ca_and_plain_mqtt(tls_broker: tuple[Server, int, Path]) -> None:
    _, port, _ = tls_broker
    stranger = new_client(over_tls(port, "meter", None), "tls-test-system-cas")  # the system's CAs only
    with pytest.raises(ssl.SSLCertVerificationError):
        stranger.connect("127.0.0.1", port)

    plain = new_client(MqttSettings(username="meter", password=PASSWORDS["meter"]), "tls-test-plain")
    acked, closed = threading.Event(), threading.Event()
    plain.on_connect = lambda *_: acked.set()
    plain.on_disconnect = lambda *_: closed.set()
    plain.connect("127.0.0.1", port)
    plain.loop_start()
    try:
        assert closed.wait(10), "the TLS port kept a plain MQTT connection open"
        assert not acked.is_set()
    finally:
        plain.loop_stop()
