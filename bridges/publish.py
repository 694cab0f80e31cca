"""`wattstream publish`: `meter.readings` → MQTT for Home Assistant, Node-RED and scripts (docs/operations.md).

Per meter, retained: `<base>/<id>/state` (the EVN decoders' JSON shape, keys `PIn`, `WIn`, ... from
`_FIELDS`), `<base>/<id>/reading` (the `Reading` JSON) and Home Assistant discovery, one sensor per key
of the state; docs/operations.md lists the topics and keys. A meter's discovery goes out when it is
first seen and again when it shows a key not announced before. Only readings produced after the start
are published (the consumer starts at the end of the topic).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridges.follow import follow, following
from bridges.homeassistant import ha_id
from bridges.mqtt import publishing_client
from pipeline import topics
from pipeline.meters_file import MetersFile
from pipeline.models import Reading, Values
from pipeline.settings import Settings

log = logging.getLogger(__name__)

# Values field → (key, unit, Home Assistant device_class, state_class)
_FIELDS: dict[str, tuple[str, str, str, str]] = {
    "voltage_v": ("U", "V", "voltage", "measurement"),
    "current_a": ("I", "A", "current", "measurement"),
    "power_w": ("P", "W", "power", "measurement"),
    "power_factor": ("PF", "", "power_factor", "measurement"),
    "frequency_hz": ("f", "Hz", "frequency", "measurement"),
    "reactive_power_var": ("Q", "var", "reactive_power", "measurement"),
    "apparent_power_va": ("S", "VA", "apparent_power", "measurement"),
    "energy_import_wh": ("WIn", "Wh", "energy", "total_increasing"),
    "energy_export_wh": ("WOut", "Wh", "energy", "total_increasing"),
    "reactive_energy_import_varh": ("QIn", "varh", "reactive_energy", "total_increasing"),
    "reactive_energy_export_varh": ("QOut", "varh", "reactive_energy", "total_increasing"),
}
_POWER = ("W", "power", "measurement")


def _scope(values: Values, suffix: str) -> Iterator[tuple[str, float | int, tuple[str, str, str]]]:
    for name, value in values.present().items():
        key, unit, device_class, state_class = _FIELDS[name]
        yield key + suffix, value, (unit, device_class, state_class)
        if name == "power_w" and not suffix:  # the EVN decoder's import / export power
            yield "PIn", max(value, 0.0), _POWER
            yield "POut", max(-value, 0.0), _POWER


def quantities(reading: Reading) -> dict[str, tuple[float | int, tuple[str, str, str]]]:
    """key → (value, (unit, device_class, state_class)) of one reading (pure)."""
    out = {key: (value, meta) for key, value, meta in _scope(reading.total, "")}
    for phase, values in sorted(reading.phases.items()):
        out |= {key: (value, meta) for key, value, meta in _scope(values, phase.removeprefix("L"))}
    for name, value in reading.extra.items():
        out[name] = (value, ("", "", "measurement"))
    return out


def state(reading: Reading, before: dict[str, Any] | None = None,
          values: dict[str, tuple[float | int, tuple[str, str, str]]] | None = None) -> dict[str, Any]:
    """The EVN-decoder style state of a meter after a reading: its values (`quantities`, when already
    known) over those of the state before (a meter that sends its values in parts — Shelly Pro 3EM,
    Acrel — keeps every key in its state)."""
    body = {**(before or {}), **{key: {"value": value, "unit": meta[0]} for key, (value, meta) in
                                 (values or quantities(reading)).items()}}
    body["ts"] = reading.ts.isoformat().replace("+00:00", "Z")
    return body


def discovery(reading: Reading, key: str, meta: tuple[str, str, str], state_topic: str,
              prefix: str) -> tuple[str, bytes]:
    """The Home Assistant discovery topic and config of one sensor of a meter."""
    node, sensor = ha_id(reading.meter_id), ha_id(key)
    unit, device_class, state_class = meta
    config: dict[str, Any] = {
        "name": key,
        "unique_id": f"wattstream_{node}_{sensor}",
        "default_entity_id": f"sensor.wattstream_{node}_{sensor}",  # HA 2026.4 dropped `object_id`
        "state_topic": state_topic,
        "value_template": f"{{{{ value_json['{key}'].value }}}}",
        "state_class": state_class,
        "device": {"identifiers": [f"wattstream_{node}"], "name": reading.meter_id,
                   "manufacturer": reading.driver, "model": "wattstream"},
    }
    if unit:
        config["unit_of_measurement"] = unit
    if device_class:
        config["device_class"] = device_class
    return f"{prefix}/sensor/wattstream_{node}/{sensor}/config", json.dumps(config).encode()


@dataclass
class Publisher:
    """What goes out for each reading: discovery for keys not announced yet, then state and reading.
    Only a reading newer than the meter's last published one goes out: the retained state is the
    meter's latest, and a reading sent again after a worker was killed (at least once between the
    worker and here), or one that came late, would otherwise show an older counter after a newer one —
    Home Assistant takes a `total_increasing` value that goes back for a meter reset and counts the
    whole register again."""

    base: str = "wattstream"
    discovery_prefix: str = "homeassistant"
    state_topics: dict[str, str] = field(default_factory=dict)  # meter id → its own state topic
    announced: dict[str, set[str]] = field(default_factory=dict)
    latest: dict[str, datetime] = field(default_factory=dict)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)  # meter id → its state as last published

    @classmethod
    def of(cls, settings: Settings, meters_file: MetersFile) -> Publisher:
        return cls(settings.publish.base_topic, settings.publish.discovery_prefix,
                   {m.meter_id: m.state_topic for m in meters_file.meter if m.state_topic})

    def messages(self, reading: Reading) -> list[tuple[str, bytes]]:
        last = self.latest.get(reading.meter_id)
        if last is not None and reading.ts <= last:
            return []
        self.latest[reading.meter_id] = reading.ts
        node = ha_id(reading.meter_id)
        state_topic = self.state_topics.get(reading.meter_id) or f"{self.base}/{node}/state"
        known = self.announced.setdefault(reading.meter_id, set())
        values = quantities(reading)
        out = [discovery(reading, key, meta, state_topic, self.discovery_prefix)
               for key, (_, meta) in values.items() if key not in known]
        known.update(values)
        self.states[reading.meter_id] = state(reading, self.states.get(reading.meter_id), values)
        out.append((state_topic, json.dumps(self.states[reading.meter_id], separators=(",", ":")).encode()))
        out.append((f"{self.base}/{node}/reading", reading.to_json()))
        return out


async def run_publish(settings: Settings, meters_file: MetersFile, stop: asyncio.Event) -> None:
    publisher, client = Publisher.of(settings, meters_file), publishing_client(settings.mqtt, "publish")
    consumer = await follow(settings.kafka.connection(), topics.READINGS, settings.kafka.partitions,
                            settings.worker.fetch_wait_ms)
    log.info("publishing %s to MQTT %s:%d", topics.READINGS, settings.mqtt.host, settings.mqtt.port)
    try:
        async for reading in following(consumer, stop, Reading.from_json):
            for topic, body in publisher.messages(reading):
                client.publish(topic, body, qos=1, retain=True)
    finally:
        client.loop_stop()
        client.disconnect()
