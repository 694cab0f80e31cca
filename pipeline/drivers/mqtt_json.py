"""Any MQTT device whose payloads are JSON or one number per topic, mapped to `Reading` fields by the
meters file (`[[mqtt_json]]`, the idea of Telegraf's `json_v2` + `topic_parsing`, in our terms), with
shipped presets for common devices (`mqtt_json_presets`); the mappings and their checks are in
`mqtt_json_mapping`. docs/meters/mqtt-json.md says what a user writes.

A mapping names a topic pattern whose `+` level is the device (`device`: another level's index, or a
fixed name), and either
- `fields`: Reading field → JSON path in the payload (`"L1.voltage_v" = "a_voltage"`), or
- `values`: Reading field → topic suffix under the pattern, the payload a bare number
  (`"L1.power_w" = "emeter/0/power"`): one value per topic, gathered per device into one reading per
  round of the device's messages (`_gather` says when a round is complete).
A field spec is a path, or `{path = ..., scale = 1000, optional = true}`; scales are exact (energies
are whole Wh). Paths are dot-separated keys, array indices as numbers, `*` for any one key (Tasmota
names the group after the meter), `|` between alternatives (the first that is there counts). A required
path that is missing is a dead letter naming the path.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from pipeline.drivers.mqtt_json_mapping import Compiled, Mappings, Source
from pipeline.errors import FrameError, MissingField, UnknownField, shorten
from pipeline.models import Reading, Values

DRIVER: Final = "mqtt_json"
MAX_DIGITS: Final = 15  # a value of 10^15 or more (before its scale) is no meter's: refused before any arithmetic
INTEGER_FIELDS: Final = frozenset(name for name, info in Values.model_fields.items() if info.annotation == int | None)


def _number(raw: object, where: str) -> Decimal:
    number = raw if isinstance(raw, Decimal) else None
    if isinstance(raw, str):
        try:
            number = Decimal(raw.strip())
        except InvalidOperation:
            pass
    if number is not None and number.is_finite():
        if number.adjusted() < MAX_DIGITS:
            return number
        raise UnknownField(f"mqtt_json: {where} is out of range: {shorten(raw)}")
    raise UnknownField(f"mqtt_json: {where} is not a number: {shorten(raw)}")


def _at(doc: Any, path: tuple[str, ...]) -> Any:
    """The value at a path, or `_ABSENT`."""
    for i, key in enumerate(path):
        if key == "*" and isinstance(doc, dict):
            return next((v for sub in doc.values() if (v := _at(sub, path[i + 1:])) is not _ABSENT), _ABSENT)
        if isinstance(doc, dict) and key in doc:
            doc = doc[key]
        elif isinstance(doc, list) and key.isdigit() and int(key) < len(doc):
            doc = doc[int(key)]
        else:
            return _ABSENT
    return doc


_ABSENT: Final = object()


def _time(raw: object, mapping: Compiled) -> datetime:
    where = ".".join(mapping.ts or ())
    try:
        if mapping.ts_format == "iso" and isinstance(raw, str):
            ts = datetime.fromisoformat(raw)
            return ts if ts.tzinfo else ts.replace(tzinfo=mapping.tz)
        if mapping.ts_format != "iso" and isinstance(raw, Decimal):
            return datetime.fromtimestamp(float(raw / 1000 if mapping.ts_format == "unix_ms" else raw), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    raise UnknownField(f"mqtt_json: {where} is not a time ({mapping.ts_format}): {shorten(raw)}")


def _reading(device: str, values: dict[str, Decimal], mapping: Compiled, ts: datetime,
             received_at: datetime) -> Reading:
    scopes: dict[str, dict[str, float | int]] = {}
    for target, number in values.items():
        source = mapping.by_target[target]
        scaled = number * source.scale
        integer = source.name in INTEGER_FIELDS and source.scope != "extra"
        scopes.setdefault(source.scope, {})[source.name] = int(scaled.to_integral_value()) if integer else float(scaled)
    return Reading.build({"meter_id": f"{DRIVER}:{device}", "driver": DRIVER, "ts": ts, "received_at": received_at,
                          "total": scopes.get("total", {}), "extra": scopes.get("extra", {}),
                          "phases": {p: v for p, v in scopes.items() if p in ("L1", "L2", "L3")}})


def decode(payload: bytes, *, received_at: datetime, device_id: str | None, topic: str, state: bytes,
           mappings: Mappings | None) -> tuple[list[Reading], bytes]:
    """One message → its reading (JSON), or the device's gathered values and, once complete, their reading.
    The state is the device's: what its one-value-per-topic mappings have gathered (`_gather`)."""
    found = mappings.find(topic) if mappings is not None else None
    if mappings is None or found is None:
        raise UnknownField(f"mqtt_json: no mapping in the meters file for topic {shorten(topic)}")
    mapping, pattern = found
    device = device_id or mapping.routes[0].key(topic)
    if mapping.values:
        return _gather(payload, mapping.values[pattern], mapping, device, received_at, state, mappings.gathering)
    try:
        doc = json.loads(payload, parse_float=Decimal, parse_int=Decimal)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FrameError(f"mqtt_json: {topic}: not JSON: {shorten(payload)}") from exc
    values = {}
    for source in mapping.fields:
        raw = next((v for path in source.where if (v := _at(doc, path)) is not _ABSENT), _ABSENT)
        if raw is _ABSENT:
            if source.optional:
                continue
            raise MissingField(f"mqtt_json: {topic}: no value at {source.path} (for {source.target})")
        if raw is not None:  # JSON null: the device has no value now
            values[source.target] = _number(raw, source.path)
    if not values:
        raise MissingField(f"mqtt_json: {topic}: none of the mapped values is in the payload")
    ts = received_at
    if mapping.ts is not None and (raw := _at(doc, mapping.ts)) is not _ABSENT:
        ts = _time(raw, mapping)
    return [_reading(device, values, mapping, ts, received_at)], state


def _gather(payload: bytes, source: Source, mapping: Compiled, device: str, received_at: datetime,
            state: bytes, gathering: frozenset[str]) -> tuple[list[Reading], bytes]:
    """A round of one device's values: given out once every value the last round had has come (a device
    that never sends some of the mapped topics is not waited for), or when one comes again first (the
    first round; a value that stayed away). State, per mapping (by its topic): `{"at": ISO time of the
    last value, "values": {field: number}, "known": [the fields of the last round]}`; fields the mapping
    no longer has, and mappings there are no more (the meters file changed), are left out."""
    try:
        number = _number(payload.decode().strip(), source.path)
    except UnicodeDecodeError as exc:
        raise FrameError(f"mqtt_json: {source.path}: not text: {shorten(payload)}") from exc
    device_state = {topic: kept for topic, kept in (json.loads(state) if state else {}).items() if topic in gathering}
    kept = device_state.get(mapping.topic, {"values": {}, "known": []})
    gathered = {t: Decimal(v) for t, v in kept["values"].items() if t in mapping.by_target}
    known = {t for t in kept["known"] if t in mapping.by_target}
    readings = []
    if source.target in gathered:  # a new round began before this one was complete
        at = datetime.fromisoformat(kept["at"])
        readings.append(_reading(device, gathered, mapping, at, at))
        gathered, known = {}, set(gathered)
    gathered[source.target] = number
    if known and known <= gathered.keys():
        readings.append(_reading(device, gathered, mapping, received_at, received_at))
        gathered, known = {}, known | gathered.keys()
    device_state[mapping.topic] = {"at": received_at.isoformat(), "values": {t: str(v) for t, v in gathered.items()},
                                   "known": sorted(known)}
    return readings, json.dumps(device_state).encode()
