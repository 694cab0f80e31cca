"""MQTT out through the real parts: a raw IAMMETER payload on Kafka → worker → `meter.readings` →
`wattstream publish` → mosquitto → a Home Assistant-style subscriber sees discovery and state; and a
Shelly Pro 3EM the meters file maps (`mqtt_json` preset) all the way from its MQTT messages, published
on the installation's own topics."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime

import paho.mqtt.client as mqtt

from pipeline import topics
from tests.conftest import Stack
from tests.frames import FRAMES, iammeter_stream
from tests.grafana import dashboards, expand, interval, panel_range, panels
from tests.kafka import deadletters, produce
from tests.mqtt import publish_all


class Subscriber:
    """What a Home Assistant instance would see: everything under `homeassistant/` and `wattstream/`."""

    def __init__(self, port: int, subscriptions: tuple[str, ...] = ("homeassistant/#", "wattstream/#")) -> None:
        self.seen: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ha-{time.monotonic_ns()}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([(topic, 1) for topic in subscriptions])
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


def test_a_mapped_mqtt_json_meter_end_to_end_on_the_installations_own_topics(stack: Stack) -> None:
    meters = stack.workdir / "meters.toml"
    meters.write_text('[[mqtt_json]]\npreset = "shelly_pro_3em"\n\n'
                      '[[meter]]\ndriver = "mqtt_json"\ndevice = "shellypro3em"\nstate_topic = "home/shelly/values"\n')
    stack.env |= {"WATTSTREAM_METERS_FILE": str(meters), "WATTSTREAM_PUBLISH_BASE_TOPIC": "energy",
                  "WATTSTREAM_PUBLISH_DISCOVERY_PREFIX": "ha"}
    publish = stack.start("publish", "publish")
    stack.start_pipeline()
    publish.wait_for("publishing meter.readings")
    live = Subscriber(stack.mosquitto.port, ("ha/#", "energy/#", "home/#"))
    try:
        lines = (FRAMES / "mqtt_json" / "shelly_pro_3em.txt").read_bytes().splitlines()
        em, emdata = ((topic.decode(), payload) for topic, _, payload in (line.partition(b" ") for line in lines))
        publish_all(stack.mosquitto.port, [em, ("shellypro3em/status/em:0", b'{"id":0,"total_current":1.0}')])
        power = json.loads(live.wait_for("home/shelly/values"))
        assert power["PIn"] == {"value": 594.006, "unit": "W"} and power["U3"] == {"value": 231.4, "unit": "V"}
        publish_all(stack.mosquitto.port, [emdata])
        deadline = time.monotonic() + 30
        while "WIn" not in json.loads(live.wait_for("home/shelly/values")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert json.loads(live.wait_for("home/shelly/values"))["WOut3"] == {"value": 1247, "unit": "Wh"}
        config = json.loads(live.wait_for("ha/sensor/wattstream_mqtt_json_shellypro3em/WIn/config"))
        assert config["state_topic"] == "home/shelly/values" and config["device_class"] == "energy"
        live.wait_for("energy/mqtt_json_shellypro3em/reading")
        assert not [t for t in live.seen if t.startswith(("homeassistant/", "wattstream/"))]
    finally:
        live.close()
    [(value, headers)] = asyncio.run(deadletters(stack.tansu.address, b"shellypro3em"))
    assert value == b'{"id":0,"total_current":1.0}'
    assert (headers[topics.H_STAGE], headers[topics.H_REASON]) == (b"decode", b"missing_field")
    assert b"no value at total_act_power" in headers[topics.H_ERROR]

    # the meter dashboard shows it as it shows any meter: its panels key on Reading fields, not drivers
    board, meter = dashboards()["meter"], "mqtt_json:shellypro3em"
    stack.influx.wait_rows(f"SELECT energy_import_wh FROM readings WHERE meter = '{meter}'", count=1)
    def values(query: str) -> list[object]:
        return [v for row in stack.influx.query(query) for k, v in row.items() if k != "time" and v is not None]

    [choice] = [v for v in board["templating"]["list"] if v["type"] == "query" and v["name"] == "meter"]
    assert meter in values(choice["query"])  # offered in the dashboard's list of meters
    empty = []
    for panel in panels(board):
        span = panel_range(board, panel, datetime.now(UTC))
        if not values(expand(panel["targets"][0]["query"], span, interval(span, panel.get("interval")),
                             {"meter": meter})):
            empty.append(panel["title"])
    # a Shelly sends its frequency per phase only; no 10-minute window closed within the test
    assert empty == ["Frequency", "10-minute averages: power", "Energy per 10 minutes"]
