"""MQTT out through the real parts: a raw IAMMETER payload on Kafka → worker → `meter.readings` →
`wattstream publish` → mosquitto → a Home Assistant-style subscriber sees discovery and state."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime

import paho.mqtt.client as mqtt

from pipeline import topics
from tests.conftest import Stack
from tests.frames import iammeter_stream
from tests.kafka import produce


class Subscriber:
    """What a Home Assistant instance would see: everything under `homeassistant/` and `wattstream/`."""

    def __init__(self, port: int) -> None:
        self.seen: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ha-{time.monotonic_ns()}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([("homeassistant/#", 1), ("wattstream/#", 1)])
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.seen[message.topic] = message.payload

    def wait_for(self, topic: str, timeout: float = 30) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if topic in self.seen:
                    return self.seen[topic]
            time.sleep(0.2)
        raise AssertionError(f"nothing on {topic} within {timeout}s; seen: {sorted(self.seen)}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_home_assistant_sees_discovery_and_state(stack: Stack) -> None:
    worker = stack.start("worker", "worker")
    publish = stack.start("publish", "publish")
    publish.wait_for("publishing meter.readings")
    worker.wait_for("Worker]: Ready")
    records, headers = iammeter_stream(meters=1, seconds=3, start=datetime(2025, 6, 21, 9, tzinfo=UTC))
    asyncio.run(produce(stack.tansu.address, topics.raw_topic("iammeter"), records, headers))

    live = Subscriber(stack.mosquitto.port)
    try:
        state = json.loads(live.wait_for("wattstream/iammeter_M000/state"))
        assert state["PIn"] == {"value": 594.0, "unit": "W"} and state["WIn"] == {"value": 1275075, "unit": "Wh"}
        energy = json.loads(live.wait_for("homeassistant/sensor/wattstream_iammeter_M000/WIn1/config"))
        assert (energy["device_class"], energy["state_class"]) == ("energy", "total_increasing")
        voltage = json.loads(live.wait_for("homeassistant/sensor/wattstream_iammeter_M000/U2/config"))
        assert voltage["state_topic"] == "wattstream/iammeter_M000/state"
    finally:
        live.close()

    later = Subscriber(stack.mosquitto.port)  # Home Assistant restarted: retained, so seen at once
    try:
        assert json.loads(later.wait_for("wattstream/iammeter_M000/state", timeout=5))["ts"] == "2025-06-21T09:00:02Z"
        later.wait_for("homeassistant/sensor/wattstream_iammeter_M000/P3/config", timeout=5)
    finally:
        later.close()
