"""The car charges from the sun, through the real parts: the simulated site publishes its grid, PV,
charger and battery meters → mosquitto → bridge → Tansu → worker (surplus controller) → `power.surplus`
→ `wattstream charger` → mosquitto → the simulated charger, whose draw shows on the grid meter; OpenEVSE,
go-e, openWB and evcc receive their documented payloads; and a charge mode set over MQTT (as Home
Assistant's select does) is refused when bad, followed when good, and still in force after the worker
restarted."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import paho.mqtt.client as mqtt

from pipeline import topics
from simulators.meters import SimulatedSite
from tests.conftest import Stack
from tests.kafka import consume_records, produce

SITE = """
[[site]]
name = "demo"
phases = "auto"
window_seconds = 2
enable_delay_seconds = 3
disable_delay_seconds = 5
phase_up_delay_seconds = 5
phase_switch_interval_seconds = 10
residual_w = -1000  # charge under a passing cloud too: this test is about the parts, not the sun

battery_priority_soc = 40

[[charger]]
name = "demo-car"
site = "demo"
format = "wattstream"
interval_seconds = 0
priority = 1

[[charger]]
name = "openevse"
site = "demo"
format = "openevse"
interval_seconds = 1

[[charger]]
name = "000123"
site = "demo"
format = "goe"

[[charger]]
name = "0"
site = "demo"
format = "openwb"

[[charger]]
name = "evcc"
site = "demo"
format = "evcc"
"""
TOPICS = {"wattstream": "wattstream/demo/surplus", "openevse": "wattstream/demo/grid_ie",
          "goe": "/go-eCharger/000123/ids/set", "openwb": "openWB/set/counter/0/get/power",
          "evcc": "wattstream/demo/grid_w", "goe amp": "/go-eCharger/000123/amp/set",
          "mode": "wattstream/demo/demo-car/mode", "error": "wattstream/demo/demo-car/mode/error",
          "select": "homeassistant/select/wattstream_demo_demo-car/mode/config"}


class Listener:
    def __init__(self, port: int) -> None:
        self.messages: dict[str, list[tuple[float, bytes]]] = {t: [] for t in TOPICS.values()}
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="charger-test-listener")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        for topic in TOPICS.values():
            self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages[message.topic].append((time.monotonic(), message.payload))

    def of(self, fmt: str) -> list[tuple[float, bytes]]:
        with self._lock:
            return list(self.messages[TOPICS[fmt]])

    def wait(self, fmt: str, test: Callable[[bytes], bool], after: float = 0.0, timeout: float = 60) -> bytes:
        """The first payload on the format's topic, received after `after`, that passes `test`."""
        deadline = time.monotonic() + timeout
        while True:
            found = [p for t, p in self.of(fmt) if t > after and test(p)]
            if found:
                return found[0]
            assert time.monotonic() < deadline, f"nothing on {TOPICS[fmt]} passed; got {self.of(fmt)[-3:]}"
            time.sleep(0.2)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_the_simulated_car_charges_from_the_sun_and_chargers_get_their_formats(stack: Stack, tmp_path: Path) -> None:
    site = SimulatedSite()
    meters = tmp_path / "meters.toml"
    meters.write_text(site.meters_toml().split("[[site]]")[0] + SITE)
    stack.env["WATTSTREAM_METERS_FILE"] = str(meters)
    listener = Listener(stack.mosquitto.port)
    try:
        stack.start_pipeline()
        charger = stack.start("charger", "charger")
        charger.wait_for("following power.surplus")
        stack.start("simulator", "simulate", "--interval", "0.5")

        deadline = time.monotonic() + 90
        while not any(json.loads(p)["charge"] for _, p in listener.of("wattstream")):
            assert time.monotonic() < deadline, f"no decision to charge; got {listener.of('wattstream')[-3:]}"
            time.sleep(0.5)
        rows = stack.influx.wait_rows(
            "SELECT power_w FROM readings WHERE meter = 'iammeter:5A1E00C1' AND power_w > 1000", count=1)
        assert rows, "the simulated car never drew power"
        # go-e gets the PV meter's production once a decision knows it (it depends on how the grid and
        # PV meters' partitions interleave, and go-e gets one message per interval)
        while not any(json.loads(p)["pPv"] > 1000 for _, p in listener.of("goe")):
            assert time.monotonic() < deadline + 30, f"no go-e message with PV; got {listener.of('goe')[-3:]}"
            time.sleep(0.5)
        time.sleep(3)
        decisions = [json.loads(p) for _, p in listener.of("wattstream")]
        modes(stack, listener)
    finally:
        listener.stop()

    charging = [d for d in decisions if d["charge"]]
    assert all(6 <= d["current_a"] <= 16 and d["phases"] in (1, 3) for d in charging)
    assert all(set(d) >= {"site", "ts", "grid_w", "surplus_w", "charge", "phases", "current_a", "reason"}
               for d in decisions)
    # the car's draw counts as available: while charging, the surplus stays above what it draws
    assert any(d["charger_w"] > 1000 for d in charging)

    openevse = [p.decode() for _, p in listener.of("openevse")]
    assert openevse and all(re.fullmatch(r"-?\d+", p) for p in openevse), openevse[:5]
    stamps = [t for t, _ in listener.of("openevse")]
    assert all(b - a >= 0.9 for a, b in pairwise(stamps))  # its interval: 1 s
    goe = [json.loads(p) for _, p in listener.of("goe")]
    assert goe and all(set(g) == {"pGrid", "pPv", "pAkku"} for g in goe)
    assert any(g["pPv"] > 1000 for g in goe)  # the PV meter's production
    for fmt in ("openwb", "evcc"):
        values = [float(p) for _, p in listener.of(fmt)]
        assert values, fmt
    # grid formats carry the grid power of the decisions (+ import, - export)
    grid = {round(d["grid_w"]) for d in decisions}
    assert any(int(p) in grid for p in openevse)
    # the house battery: its power and state of charge in the decisions and in InfluxDB
    assert all(0 <= d["battery_soc"] <= 100 for d in decisions if "battery_soc" in d)
    assert any("battery_soc" in d and "battery_w" in d for d in decisions)
    assert stack.influx.wait_rows("SELECT battery_soc, battery_w FROM surplus WHERE site = 'demo'", count=1)
    assert {int(p) for _, p in listener.of("goe amp")} <= set(range(6, 17))


def modes(stack: Stack, listener: Listener) -> None:
    """Home Assistant's select sets the car's mode: a bad one is refused, `now` is followed at the next
    decision and stays in force after the worker restarted."""
    select = json.loads(listener.wait("select", lambda p: True))
    assert select["command_topic"] == "wattstream/demo/demo-car/mode/set" and "now" in select["options"]
    assert listener.wait("mode", lambda p: True) == b"pv"  # the retained state of the meters file's default
    setter = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="charger-test-ha")
    setter.connect("127.0.0.1", stack.mosquitto.port)
    setter.loop_start()
    try:
        setter.publish(select["command_topic"], b"turbo", qos=1).wait_for_publish(10)
        assert b"'turbo' is not one of" in listener.wait("error", lambda p: p != b"")
        sent = time.monotonic()
        setter.publish(select["command_topic"], b"now", qos=1).wait_for_publish(10)
        now = json.loads(listener.wait("wattstream", lambda p: json.loads(p)["reason"].startswith("now"), sent))
        assert now["charge"] and now["current_a"] == 16 and now["chargers"]["demo-car"]["mode"] == "now"
        listener.wait("mode", lambda p: p == b"now", sent)
        listener.wait("error", lambda p: p == b"", sent)  # the refusal is cleared
    finally:
        setter.loop_stop()
        setter.disconnect()
    worker = next(p for p in stack.processes if p.name == "worker")
    worker.stop()
    before = max(ts(p) for _, p in listener.of("wattstream"))  # the old worker's last decision
    stack.start("worker-again", "worker").wait_for("Worker]: Ready")
    again = json.loads(listener.wait("wattstream", lambda p: ts(p) > before, timeout=90))
    assert again["chargers"]["demo-car"]["mode"] == "now" and again["current_a"] == 16, again
    # sets that reach the worker without `wattstream charger`'s checks are dead letters, the worker goes on
    command = {"site": "demo", "charger": "demo-car", "mode": "pv", "at": "2026-12-07T12:00:00Z"}
    bad = [(b"demo", b"not json"), (b"demo", json.dumps({**command, "charger": "garage"}).encode()),
           (b"elsewhere", json.dumps({**command, "site": "elsewhere"}).encode()),
           (b"other", json.dumps(command).encode())]
    sent = time.monotonic()
    asyncio.run(produce(stack.tansu.address, topics.SITE_READINGS, bad,
                        [[(topics.H_COMMAND, topics.COMMAND_MODE)]] * len(bad)))
    letters = asyncio.run(consume_records(stack.tansu.address, topics.DEADLETTER, count=len(bad), within=30, idle=0,
                                          keep=lambda h: h.get(topics.H_STAGE) == b"surplus"))
    assert sorted(h[topics.H_REASON] for _, _, h in letters) == [b"bad_command", b"bad_command", b"no_charger",
                                                                 b"no_site"]
    assert listener.wait("wattstream", lambda p: json.loads(p)["chargers"]["demo-car"]["mode"] == "now", sent)


def ts(payload: bytes) -> datetime:
    return datetime.fromisoformat(json.loads(payload)["ts"])
