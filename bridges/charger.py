"""`wattstream charger`: `power.surplus` → every configured charger, over MQTT, in the format it already
reads (docs/charging.md); and the chargers' charge modes set over MQTT → the worker (`bridges.charge_modes`).
Edge I/O only: the decision is made by the worker; this loop formats and publishes.

Each format's topics and payloads are in docs/charging.md; `payloads` builds them.

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
from aiokafka.errors import KafkaError

from bridges import charge_modes
from bridges.follow import follow, following
from bridges.mqtt import publishing_client
from pipeline import topics
from pipeline.brokers import Connection
from pipeline.kafka import ensure_topics_when_reachable
from pipeline.models import ChargerDecision, ModeCommand, SurplusSignal
from pipeline.settings import Settings
from pipeline.sites import Charger

log = logging.getLogger(__name__)
Message = tuple[str, bytes, int, bool]  # topic, payload, QoS, retained


def payloads(charger: Charger, signal: SurplusSignal, mine: SurplusSignal) -> list[tuple[str, bytes]]:
    """What one charger receives for one signal (pure); `mine` is the signal as it sees it (`for_charger`)."""
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


@dataclass
class Dispatcher:
    """Which charger gets which signal when (pure apart from the clock passed in). A site's decisions
    come in event-time order, one per grid reading; one whose time is not after the site's last is a
    decision the worker sent again after it was killed (the same one) and is not acted on twice."""

    chargers: tuple[Charger, ...]
    _sent_at: dict[tuple[str, str], float] = field(default_factory=dict)  # by (site, charger)
    _decided: dict[tuple[str, str], tuple[bool, int, float]] = field(default_factory=dict)
    _modes: dict[tuple[str, str], tuple[str, float | None, datetime | None]] = field(default_factory=dict)
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
            key, mine = (charger.site, charger.name), signal.for_charger(charger.name)
            changed = self._decided.get(key) != (mine.charge, mine.phases, mine.current_a)
            self._decided[key] = (mine.charge, mine.phases, mine.current_a)
            due = now - self._sent_at.get(key, -1e18) >= charger.interval_seconds
            if due or (changed and charger.driven):
                self._sent_at[key] = now
                qos = 1 if charger.driven else 0  # a missed grid value is soon stale
                out += [(charger, (t, body, qos, False)) for t, body in payloads(charger, signal, mine)]
            decision = signal.chargers.get(charger.name)
            if decision is not None and self._modes.get(key) != (mode := _mode(decision)):
                self._modes[key] = mode
                out += [(charger, (t, body, 1, True)) for t, body in charge_modes.states(charger, decision)]
        return out


def _mode(decision: ChargerDecision) -> tuple[str, float | None, datetime | None]:
    return decision.mode, decision.target_kwh, decision.until


async def run_chargers(settings: Settings, chargers: tuple[Charger, ...], stop: asyncio.Event) -> None:
    """`chargers`: the meters file's (`wattstream charger` refuses a file without one)."""
    for charger in chargers:
        log.info("charger %s (%s) of site %s on %s", charger.name, charger.format, charger.site, charger.mqtt_topic)
    kafka = settings.kafka.connection()
    consumer = await follow(kafka, topics.SURPLUS, settings.kafka.partitions, settings.worker.fetch_wait_ms)
    producer: AIOKafkaProducer | None = None
    client: mqtt.Client | None = None
    modes: asyncio.Task[None] | None = None
    try:
        producer = await _producer(kafka, settings.kafka.partitions)
        sets: asyncio.Queue[mqtt.MQTTMessage] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        driven = charge_modes.driven(chargers)
        announce = [m for c in driven.values() for m in charge_modes.discovery(c, settings.publish.discovery_prefix)]
        client = publishing_client(settings.mqtt, "charger", lambda c: _announce(c, announce),
                                   lambda message: loop.call_soon_threadsafe(sets.put_nowait, message))
        modes = asyncio.create_task(_take_sets(driven, sets, producer, client))
        dispatcher = Dispatcher(chargers)
        log.info("following %s", topics.SURPLUS)
        async for signal in following(consumer, stop, SurplusSignal.from_json):
            for _, (mqtt_topic, body, qos, retain) in dispatcher.messages(signal, time.monotonic()):
                client.publish(mqtt_topic, body, qos=qos, retain=retain)
            log.debug("%s: %s", signal.site, signal.reason)
    finally:
        if modes is not None:
            modes.cancel()
            await asyncio.gather(modes, return_exceptions=True)
        if client is not None:
            client.loop_stop()
            client.disconnect()
        if producer is not None:
            await producer.stop()
        await consumer.stop()


async def _producer(kafka: Connection, partitions: int) -> AIOKafkaProducer:
    """A producer for the mode sets (`meter.readings.site` created if need be); waits for Kafka."""
    await ensure_topics_when_reachable(kafka, [topics.SITE_READINGS], partitions)
    producer = AIOKafkaProducer(**kafka, acks="all")
    await producer.start()
    return producer


def _announce(client: mqtt.Client, announce: list[tuple[str, bytes]]) -> None:
    """At every connect: take the mode sets, and tell Home Assistant about them."""
    for set_topic in charge_modes.SETS:
        client.subscribe(set_topic, qos=1)
    for mqtt_topic, body in announce:
        client.publish(mqtt_topic, body, qos=1, retain=True)


async def _take_sets(chargers: dict[tuple[str, str], Charger], sets: asyncio.Queue[mqtt.MQTTMessage],
                     producer: AIOKafkaProducer, client: mqtt.Client) -> None:
    """Each mode set → a `ModeCommand` for the site's controller, or a refusal on `mode/error`. A
    retained set is not taken: it would set the mode again at every start of this bridge."""
    while True:
        message = await sets.get()
        if message.retain:
            log.warning("mode set on %s is retained: not taken (clear it; a set must not be retained)",
                        message.topic)
            continue
        try:
            charger, result = charge_modes.command(chargers, message.topic, message.payload, datetime.now(UTC))
        except Exception as exc:  # whatever a payload does (JSON nested too deep), the sets go on
            charger, result = None, f"{message.topic}: not understood ({type(exc).__name__})"
        if isinstance(result, ModeCommand):
            try:
                await producer.send_and_wait(topics.SITE_READINGS, result.to_json(), key=result.site.encode(),
                                             headers=[(topics.H_COMMAND, topics.COMMAND_MODE)])
            except KafkaError as exc:  # the mode in force stays; the user sets it again
                result = f"mode {result.mode} not taken: Kafka did not confirm it ({exc})"
        if isinstance(result, str):
            log.warning("mode set refused: %s", result)
        else:
            log.info("charger %s of site %s: mode %s set%s", result.charger, result.site, result.mode,
                     f" (until {result.target_kwh:g} kWh)" if result.target_kwh else
                     f" (until {result.until.isoformat()})" if result.until else "")
        if charger is not None:  # a refusal shows, retained; a taken set clears it
            error = result.encode() if isinstance(result, str) else b""
            client.publish(charge_modes.topic(charger, "mode/error"), error, qos=1, retain=True)
