"""The mosquitto.conf compose mounts, run by the real Debian mosquitto: it starts, and while the bridge's
persistent session is away it keeps the meters' QoS 0 messages — more of them than mosquitto's default
of 1000 — and hands them over when the bridge is back."""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import paho.mqtt.publish as publish

from pipeline.embedded.servers import start_mosquitto

ROOT = Path(__file__).parent.parent.parent
MESSAGES = 3000


def session(port: int, received: list[bytes], done: threading.Event) -> mqtt.Client:
    """The bridge's kind of session: fixed client id, not clean, QoS 1 subscription."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="conf-test-bridge", clean_session=False)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_: subscribed.set()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        received.append(message.payload)
        if len(received) >= MESSAGES:
            done.set()

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe("device/+/realtime", qos=1)
    client.loop_start()
    assert subscribed.wait(10), "no SUBACK"
    return client


def test_the_compose_broker_keeps_qos0_messages_for_an_absent_bridge(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path / "mosquitto", config=(ROOT / "mosquitto" / "mosquitto.conf").read_text())
    try:
        received: list[bytes] = []
        done = threading.Event()
        bridge = session(broker.port, received, done)
        bridge.disconnect()
        bridge.loop_stop()
        publish.multiple([{"topic": f"device/M{i % 10}/realtime", "payload": str(i), "qos": 0}
                          for i in range(MESSAGES)], hostname="127.0.0.1", port=broker.port)
        bridge = session(broker.port, received, done)
        try:
            assert done.wait(30), f"{len(received)} of {MESSAGES} QoS 0 messages kept for the absent bridge"
        finally:
            bridge.disconnect()
            bridge.loop_stop()
        assert sorted(int(p) for p in received) == list(range(MESSAGES))
    finally:
        broker.stop()
