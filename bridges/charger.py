"""`wattstream charger`: `power.surplus` → every configured charger, over MQTT, in the format it already
reads (DESIGN §4); and the chargers' charge modes set over MQTT → the worker (`bridges.charge_modes`).
Edge I/O only: the decision is made by the worker; this loop formats and publishes.

- `wattstream` (`wattstream/<site>/surplus`): the `SurplusSignal` JSON, with this charger's decision at
  the top level;
- `goe` (`/go-eCharger/<name>/ids/set`, go-e API v2): `ids` `{"pGrid": W, "pPv": W, "pAkku": W}`, and
  our decision beside it on `.../amp/set` (A), `.../psm/set` (1: one phase, 2: three) and `.../frc/set`
  (1: off, 2: on);
- `openevse` (`wattstream/<site>/grid_ie`): OpenEVSE solar divert "Grid IE", bare integer W, + import;
  with a `control_topic` (its MQTT base topic) also our decision: `<base>/divertmode/set` `1` (its own
  divert off) and `<base>/override/set` `{"state": "active", "charge_current": A}` or
  `{"state": "disabled"}`;
- `openwb` (`openWB/set/counter/<name>/get/power`): openWB 2 MQTT counter, float W, + import;
- `evcc` (`wattstream/<site>/grid_w`): plain watts for evcc's `mqtt` meter plugin (grid usage).

`wattstream`, `goe` and OpenEVSE with a `control_topic` are driven by our decision (the controller
shares the site's surplus among them by priority, and they have charge modes); OpenEVSE without one,
openWB and evcc get the site's grid power and run their own surplus control on it (OpenEVSE's divert,
openWB's and evcc's controllers), so two controllers never fight over one car. Each charger gets at
most one message per `interval_seconds` (OpenEVSE expects one every 5-10 s); a changed decision goes
out to driven chargers at once. Only signals produced after the start are sent: a charger must never
act on a stale decision, so the consumer starts at the end of the topic.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaProducer

from bridges import charge_modes
from bridges.follow import follow, following
from bridges.kafka import ensure_topics
from bridges.mqtt import new_client
from pipeline import topics
from pipeline.models import ChargerDecision, SurplusSignal
from pipeline.settings import Settings
from pipeline.sites import Charger

log = logging.getLogger(__name__)
Message = tuple[str, bytes, int, bool]  # topic, payload, QoS, retained


def payloads(charger: Charger, signal: SurplusSignal) -> list[tuple[str, bytes]]:
    """What one charger receives for one signal (pure)."""
    mine = signal.for_charger(charger.name)
    if charger.format == "openevse":
        grid_ie = [(charger.mqtt_topic, str(round(signal.grid_w)).encode())]
        if charger.control_topic is None:
            return grid_ie
        override = {"state": "active", "charge_current": round(mine.current_a)} if mine.charge else \
            {"state": "disabled"}
        return [*grid_ie, (f"{charger.control_topic}/divertmode/set", b"1"),
                (f"{charger.control_topic}/override/set", json.dumps(override).encode())]
    if charger.format == "goe":
        base = charger.mqtt_topic.removesuffix("/ids/set")
        ids = json.dumps({"pGrid": signal.grid_w, "pPv": signal.pv_w or 0.0, "pAkku": signal.battery_w or 0.0})
        return [(charger.mqtt_topic, ids.encode()), (f"{base}/amp/set", b"%d" % max(mine.current_a, 6)),
                (f"{base}/psm/set", b"2" if mine.phases == 3 else b"1"),
                (f"{base}/frc/set", b"2" if mine.charge else b"1")]
    if charger.format in ("openwb", "evcc"):
        return [(charger.mqtt_topic, repr(float(signal.grid_w)).encode())]
    return [(charger.mqtt_topic, mine.to_json())]


def _decision(signal: SurplusSignal, charger: Charger) -> tuple[bool, int, float]:
    mine = signal.for_charger(charger.name)
    return mine.charge, mine.phases, mine.current_a


@dataclass
class Dispatcher:
    """Which charger gets which signal when (pure apart from the clock passed in). A site's decisions
    come in event-time order, one per grid reading; one whose time is not after the site's last is a
    decision the worker sent again after it was killed (the same one) and is not acted on twice."""

    chargers: tuple[Charger, ...]
    _sent_at: dict[str, float] = field(default_factory=dict)
    _decided: dict[str, tuple[bool, int, float]] = field(default_factory=dict)
    _modes: dict[str, ChargerDecision] = field(default_factory=dict)
    _latest: dict[str, datetime] = field(default_factory=dict)

    def messages(self, signal: SurplusSignal, now: float) -> list[tuple[Charger, Message]]:
        last = self._latest.get(signal.site)
        if last is not None and signal.ts <= last:
            return []
        self._latest[signal.site] = signal.ts
        out: list[tuple[Charger, Message]] = []
        for charger in self.chargers:
            if charger.site != signal.site:
                continue
            driven = charger.driven
            changed = self._decided.get(charger.name) != _decision(signal, charger)
            self._decided[charger.name] = _decision(signal, charger)
            due = now - self._sent_at.get(charger.name, -1e18) >= charger.interval_seconds
            if due or (changed and driven):
                self._sent_at[charger.name] = now
                qos = 1 if driven else 0  # a missed grid value is soon stale
                out += [(charger, (t, body, qos, False)) for t, body in payloads(charger, signal)]
            decision = charge_modes.decision_of(signal, charger)
            if decision is not None and _mode(self._modes.get(charger.name)) != _mode(decision):
                self._modes[charger.name] = decision
                out += [(charger, (t, body, 1, True)) for t, body in charge_modes.states(charger, decision)]
        return out


def _mode(decision: ChargerDecision | None) -> tuple[str, float | None, datetime | None] | None:
    return None if decision is None else (decision.mode, decision.target_kwh, decision.until)


H_COMMAND_MODE = (topics.H_COMMAND, b"mode")


async def run_chargers(settings: Settings, stop: asyncio.Event) -> None:
    chargers = settings.plant().charger
    if not chargers:
        raise SystemExit("no [[charger]] in the meters file (WATTSTREAM_METERS_FILE)")
    for charger in chargers:
        log.info("charger %s (%s) of site %s on %s", charger.name, charger.format, charger.site, charger.mqtt_topic)
    kafka = settings.kafka.connection()
    await ensure_topics(kafka, [topics.SITE_READINGS], settings.kafka.partitions)
    producer = AIOKafkaProducer(**kafka, acks="all")
    await producer.start()
    sets: asyncio.Queue[mqtt.MQTTMessage] = asyncio.Queue()
    client = _client(settings, chargers, asyncio.get_running_loop(), sets)
    modes = asyncio.create_task(_take_sets(charge_modes.driven(chargers), sets, producer, client))
    dispatcher = Dispatcher(chargers)
    consumer = await follow(kafka, topics.SURPLUS, settings.kafka.partitions, settings.worker.fetch_wait_ms)
    log.info("following %s", topics.SURPLUS)
    try:
        async for signal in following(consumer, stop, SurplusSignal.from_json):
            for _, (mqtt_topic, body, qos, retain) in dispatcher.messages(signal, time.monotonic()):
                client.publish(mqtt_topic, body, qos=qos, retain=retain)
            log.debug("%s: %s", signal.site, signal.reason)
    finally:
        modes.cancel()
        client.loop_stop()
        client.disconnect()
        await producer.stop()


def _client(settings: Settings, chargers: tuple[Charger, ...], loop: asyncio.AbstractEventLoop,
            sets: asyncio.Queue[mqtt.MQTTMessage]) -> mqtt.Client:
    """Publishes to the chargers; takes the mode sets (and announces them to Home Assistant) on every
    connect."""
    client = new_client(settings.mqtt, f"{settings.mqtt.client_id}-charger")
    announce = [m for c in charge_modes.driven(chargers).values()
                for m in charge_modes.discovery(c, settings.publish.discovery_prefix)]

    def on_connect(c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        if reason.is_failure:
            log.warning("MQTT connect refused: %s", reason)
            return
        for set_topic in charge_modes.SETS:
            c.subscribe(set_topic, qos=1)
        for mqtt_topic, body in announce:
            c.publish(mqtt_topic, body, qos=1, retain=True)

    client.on_connect = on_connect
    client.on_message = lambda _c, _u, message: loop.call_soon_threadsafe(sets.put_nowait, message)
    client.reconnect_delay_set(1, 30)
    client.connect_async(settings.mqtt.host, settings.mqtt.port, settings.mqtt.keepalive)
    client.loop_start()
    return client


async def _take_sets(chargers: dict[tuple[str, str], Charger], sets: asyncio.Queue[mqtt.MQTTMessage],
                     producer: AIOKafkaProducer, client: mqtt.Client) -> None:
    """Each mode set → a `ModeCommand` for the site's controller, or a refusal on `mode/error`."""
    while True:
        message = await sets.get()
        charger, result = charge_modes.command(chargers, message.topic, message.payload, datetime.now(UTC))
        if isinstance(result, str):
            log.warning("mode set refused: %s", result)
            if charger is not None:
                client.publish(charge_modes.topic(charger, "mode/error"), result.encode(), qos=1, retain=True)
            continue
        try:
            await producer.send_and_wait(topics.SITE_READINGS, result.to_json(), key=result.site.encode(),
                                         headers=[H_COMMAND_MODE])
        except Exception as exc:  # Kafka down: the user sets it again; the mode in force stays
            log.warning("mode set for %s not taken, Kafka did not confirm it: %s", result.charger, exc)
            continue
        log.info("charger %s of site %s: mode %s set%s", result.charger, result.site, result.mode,
                 f" (until {result.target_kwh:g} kWh)" if result.target_kwh else
                 f" (until {result.until.isoformat()})" if result.until else "")
        client.publish(charge_modes.topic(charger, "mode/error"), b"", qos=1, retain=True)
