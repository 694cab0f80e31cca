"""The MQTT bridge loses nothing while Kafka is away: the broker keeps the unacknowledged messages of
our persistent session and the bridge sends them once Kafka is back. (Killed: test_mosquitto_conf.py.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import paho.mqtt.publish as publish

from tests.conftest import Process
from tests.kafka import raw_values
from tests.mqtt import bridge_env, publish_all
from wattstream.embedded.children import stop_child
from wattstream.embedded.servers import Server, start_amqtt, start_mosquitto, start_tansu


def body(i: int) -> bytes:
    return b'{"SN":"0B0B0B0B","Data":[230,1,%d,1,0,50,1]}' % i


def test_messages_published_while_kafka_is_down_arrive_after_it_returns(mosquitto: Server, tmp_path: Path) -> None:
    kafka = start_tansu(tmp_path / "tansu")
    env = bridge_env(kafka.address, mosquitto.port, f"bridge-{kafka.port}")
    bridge = Process("bridge", ["bridge", "mqtt"], env, tmp_path)
    try:
        bridge.wait_for("MQTT subscribed")
        publish_all(mosquitto.port, [("device/0B0B0B0B/realtime", body(i)) for i in range(3)])
        assert asyncio.run(raw_values(kafka.address, 3)) == [body(i) for i in range(3)]

        kafka.stop()  # Tansu keeps its data in memory: what it had is gone, what comes next must not be
        publish_all(mosquitto.port, [("device/0B0B0B0B/realtime", body(i)) for i in range(3, 8)])
        bridge.wait_for("leaving MQTT until Kafka is back", timeout=60)
        kafka = start_tansu(tmp_path / "tansu2", port=kafka.port)
        assert sorted(asyncio.run(raw_values(kafka.address, 5))) == sorted(body(i) for i in range(3, 8))
        assert bridge.proc.poll() is None
    finally:
        bridge.stop()
        kafka.stop()


def test_the_bridge_says_when_the_broker_does_not_upgrade_qos0(tansu: Server, tmp_path: Path) -> None:
    """A broker without `upgrade_outgoing_qos` hands a meter's QoS 0 message over at QoS 0: what the bridge
    holds of those is lost when it is killed, and the bridge says so (once)."""
    broker = start_mosquitto(tmp_path / "mosquitto", config="listener 1883\nallow_anonymous true\n")
    env = bridge_env(tansu.address, broker.port, "bridge-qos0")
    bridge = None
    try:
        bridge = Process("bridge", ["bridge", "mqtt"], env, tmp_path)
        bridge.wait_for("MQTT subscribed")
        for i in range(2):
            publish.single("device/0C0C0C0C/realtime", body(i), qos=0, hostname="127.0.0.1", port=broker.port)
        assert asyncio.run(raw_values(tansu.address, 2)) == [body(0), body(1)]
        bridge.wait_for("came with QoS 0")
        assert bridge.output().count("came with QoS 0") == 1
    finally:
        if bridge is not None:
            bridge.stop()
        broker.stop()


def test_python_broker_fallback_carries_qos1_with_manual_acks(tmp_path: Path) -> None:
    """`wattstream run` uses amqtt where mosquitto is not installed: it must speak what the bridge needs."""
    import paho.mqtt.client as mqtt

    broker = start_amqtt(tmp_path)
    received: list[bytes] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fallback-test", clean_session=False,
                         manual_ack=True)
    client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe("device/+/realtime", 1)
    client.on_message = lambda c, _u, m: (received.append(m.payload), c.ack(m.mid, m.qos))
    try:
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        deadline = time.monotonic() + 20
        while not received and time.monotonic() < deadline:
            publish_all(broker.port, [("device/FA11BACC/realtime", body(1))])
            time.sleep(0.5)
        assert received and received[0] == body(1)
    finally:
        client.loop_stop()
        client.disconnect()
        broker.stop()


def test_a_stop_ends_the_bridge_while_it_waits_for_kafka(mosquitto: Server, tmp_path: Path) -> None:
    """Kafka went away: the bridge left MQTT and waits for Kafka; TERM (systemd, `docker stop`) ends it
    cleanly, at once, not after Kafka is back or the KILL that follows."""
    kafka = start_tansu(tmp_path / "tansu")
    env = bridge_env(kafka.address, mosquitto.port, f"bridge-stop-{kafka.port}")
    bridge = Process("bridge", ["bridge", "mqtt"], env, tmp_path)
    try:
        bridge.wait_for("MQTT subscribed")
        kafka.stop()
        publish_all(mosquitto.port, [("device/0D0D0D0D/realtime", body(1))])
        bridge.wait_for("leaving MQTT until Kafka is back", timeout=60)
        bridge.wait_for("waiting for Kafka at")
        assert stop_child(bridge.proc, timeout=20) == 0, bridge.output()[-3000:]
    finally:
        bridge.stop()
        kafka.stop()  # (stopped already, unless the test failed before)
