"""`wattstream charger`: `power.surplus` → every configured charger, over MQTT, in the format it already
reads (DESIGN §4). Edge I/O only: the decision is made by the worker; this loop formats and publishes.

| format | topic (default) | payload |
|---|---|---|
| `openevse` | `wattstream/<site>/grid_ie` | OpenEVSE solar divert "Grid IE": bare integer W, + import, - export |
| `goe` | `/go-eCharger/<name>/ids/set` | go-e API v2 `ids`: `{"pGrid": W, "pPv": W, "pAkku": W}` |
| `openwb` | `openWB/set/counter/<name>/get/power` | openWB 2 MQTT counter: float W, + import |
| `evcc` | `wattstream/<site>/grid_w` | plain watts for evcc's `mqtt` meter plugin (grid usage) |
| `wattstream` | `wattstream/<site>/surplus` | the `SurplusSignal` JSON: decision, phases, current, reason |

The first four carry the site's grid power (these chargers and evcc run their own surplus control on
it); `wattstream` carries our decision, for chargers driven by it (the simulated one, Node-RED, scripts).
Each charger gets at most one message per `interval_seconds` (OpenEVSE expects one every 5-10 s); a
changed decision goes out to `wattstream` chargers at once. Only signals produced after the start are
sent: a charger must never act on a stale decision, so the consumer starts at the end of the topic.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from bridges.follow import follow, following
from bridges.mqtt import publishing_client
from pipeline import topics
from pipeline.models import SurplusSignal
from pipeline.settings import Charger, Settings

log = logging.getLogger(__name__)


def payload(charger: Charger, signal: SurplusSignal) -> bytes:
    """What one charger receives for one signal (pure)."""
    if charger.format == "openevse":
        return str(round(signal.grid_w)).encode()
    if charger.format == "goe":
        return json.dumps({"pGrid": signal.grid_w, "pPv": signal.pv_w or 0.0, "pAkku": 0.0}).encode()
    if charger.format in ("openwb", "evcc"):
        return repr(float(signal.grid_w)).encode()
    return signal.to_json()


def _decision(signal: SurplusSignal) -> tuple[bool, int, float]:
    return signal.charge, signal.phases, signal.current_a


@dataclass
class Dispatcher:
    """Which charger gets which signal when (pure apart from the clock passed in). A site's decisions
    come in event-time order, one per grid reading; one whose time is not after the site's last is a
    decision the worker sent again after it was killed (the same one) and is not acted on twice."""

    chargers: tuple[Charger, ...]
    _sent_at: dict[str, float] = field(default_factory=dict)
    _decided: dict[str, tuple[bool, int, float]] = field(default_factory=dict)
    _latest: dict[str, datetime] = field(default_factory=dict)

    def messages(self, signal: SurplusSignal, now: float) -> list[tuple[Charger, bytes]]:
        last = self._latest.get(signal.site)
        if last is not None and signal.ts <= last:
            return []
        self._latest[signal.site] = signal.ts
        changed = self._decided.get(signal.site) != _decision(signal)
        self._decided[signal.site] = _decision(signal)
        out = []
        for charger in self.chargers:
            if charger.site != signal.site:
                continue
            due = now - self._sent_at.get(charger.name, -1e18) >= charger.interval_seconds
            if due or (changed and charger.format == "wattstream"):
                self._sent_at[charger.name] = now
                out.append((charger, payload(charger, signal)))
        return out


async def run_chargers(settings: Settings, stop: asyncio.Event) -> None:
    chargers = settings.plant().charger
    if not chargers:
        raise SystemExit("no [[charger]] in the meters file (WATTSTREAM_METERS_FILE)")
    for charger in chargers:
        log.info("charger %s (%s) of site %s on %s", charger.name, charger.format, charger.site, charger.mqtt_topic)
    dispatcher, client = Dispatcher(chargers), publishing_client(settings.mqtt, "charger")
    consumer = await follow(settings.kafka.connection(), topics.SURPLUS, settings.kafka.partitions,
                            settings.worker.fetch_wait_ms)
    log.info("following %s", topics.SURPLUS)
    try:
        async for signal in following(consumer, stop, SurplusSignal.from_json):
            for charger, body in dispatcher.messages(signal, time.monotonic()):
                qos = 1 if charger.format == "wattstream" else 0  # a missed grid value is soon stale
                client.publish(charger.mqtt_topic, body, qos=qos)
            log.debug("%s: %s", signal.site, signal.reason)
    finally:
        client.loop_stop()
        client.disconnect()
