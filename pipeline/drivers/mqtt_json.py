"""Any MQTT device whose payloads are JSON or one number per topic, mapped to `Reading` fields by the
meters file (`[[mqtt_json]]`, the idea of Telegraf's `json_v2` + `topic_parsing`, in our terms), with
shipped presets for common devices (`presets`). docs: README "Any MQTT JSON".

A mapping names a topic pattern whose `+` level is the device (`device`: another level's index, or a
fixed name), and either
- `fields`: Reading field → JSON path in the payload (`"L1.voltage_v" = "a_voltage"`), or
- `values`: Reading field → topic suffix under the pattern, the payload a bare number
  (`"L1.power_w" = "emeter/0/power"`): one value per topic, gathered per device into one reading per
  round of the device's messages (`_gather` says when a round is complete).
A field spec is a path, or `{path = ..., scale = 1000, optional = true}`; scales are exact (energies
are whole Wh). Paths are dot-separated keys, array indices as numbers, `*` for any one key (Tasmota
names the group after the meter). A required path that is missing is a dead letter naming the path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, model_validator

from pipeline.drivers.config import Route
from pipeline.drivers.mqtt_json_presets import PRESETS
from pipeline.errors import FrameError, MissingField, UnknownField, shorten
from pipeline.models import Reading, Values

DRIVER: Final = "mqtt_json"
SCOPES: Final = frozenset({"total", "L1", "L2", "L3", "extra"})
INTEGER_FIELDS: Final = frozenset(name for name, info in Values.model_fields.items() if info.annotation == int | None)


class FieldSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str  # JSON path (`fields`) or topic suffix (`values`)
    scale: Decimal = Decimal(1)  # the value is multiplied by it (kWh → Wh: 1000)
    optional: bool = False


class JsonMapping(BaseModel):
    """One `[[mqtt_json]]` entry of the meters file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: str | None = None  # a shipped mapping (`presets.PRESETS`); `topic` then replaces its base
    topic: str | None = None
    device: int | str | None = None  # the device's topic level (0: the first), or its id; default: the first `+`
    fields: dict[str, str | FieldSpec] = {}
    values: dict[str, str | FieldSpec] = {}
    ts: str | None = None  # JSON path of the reading's time; default: the receive time
    ts_format: Literal["iso", "unix", "unix_ms"] = "iso"
    tz: str = "UTC"  # the zone of an ISO time without offset

    @model_validator(mode="after")
    def _complete(self) -> JsonMapping:
        if self.preset is not None:
            if self.preset not in PRESETS:
                raise ValueError(f"mqtt_json: no preset {self.preset!r} (there are {', '.join(sorted(PRESETS))})")
        elif self.topic is None or bool(self.fields) == bool(self.values):
            raise ValueError("mqtt_json: give a preset, or a topic with either fields (JSON) or values (one per topic)")
        ZoneInfo(self.tz)
        for target in (*self.fields, *self.values):
            _target(target)
        return self

    def expand(self) -> list[JsonMapping]:
        """A preset's parts with this entry's topic base and fields laid over them; else itself."""
        if self.preset is None:
            return [self]
        preset = PRESETS[self.preset]
        base = self.topic or preset["base"]
        parts = []
        for part in preset["parts"]:
            kind = "fields" if "fields" in part else "values"
            ours = self.fields if kind == "fields" else self.values
            specs = {**part[kind], **{t: s for t, s in ours.items() if t in part[kind]}}
            parts.append({**part, "topic": part["topic"].format(base=base), kind: specs})
        for kind in ("fields", "values"):  # a field no part maps: into the first part of that kind
            extra = {t: s for t, s in getattr(self, kind).items() if not any(t in p.get(kind, {}) for p in parts)}
            if extra:
                first = next((p for p in parts if kind in p), None)
                if first is None:
                    raise ValueError(f"mqtt_json: preset {self.preset} has no {kind}")
                first[kind] = {**first[kind], **extra}
        settings = {"device": self.device, "ts": self.ts, "ts_format": self.ts_format, "tz": self.tz}
        return [JsonMapping.model_validate({**{k: v for k, v in settings.items() if v is not None}, **part})
                for part in parts]


def _target(target: str) -> tuple[str, str]:
    scope, _, name = target.rpartition(".")
    scope = scope or "total"
    if scope not in SCOPES:
        raise ValueError(f"mqtt_json: {target!r}: the scope must be one of {', '.join(sorted(SCOPES))}")
    if scope != "extra" and name not in Values.model_fields:
        raise ValueError(f"mqtt_json: {target!r}: {name} is not a Reading field "
                         f"({', '.join(Values.model_fields)}; other values as extra.<name>)")
    return scope, name


@dataclass(frozen=True)
class Source:
    target: str  # as written in the meters file
    scope: str
    name: str
    where: tuple[str, ...]  # JSON path segments; for `values` the topic suffix as one segment
    scale: Decimal
    optional: bool


def _sources(specs: dict[str, str | FieldSpec], per_topic: bool) -> tuple[Source, ...]:
    out = []
    for target, spec in specs.items():
        spec = FieldSpec(path=spec) if isinstance(spec, str) else spec
        scope, name = _target(target)
        out.append(Source(target, scope, name, (spec.path,) if per_topic else tuple(spec.path.split(".")),
                          spec.scale, spec.optional))
    return tuple(out)


@dataclass(frozen=True)
class Compiled:
    routes: tuple[Route, ...]
    fields: tuple[Source, ...]
    values: dict[str, Source]  # subscription (the topic with its suffix) → source
    ts: tuple[str, ...] | None
    ts_format: str
    tz: ZoneInfo


def _compile(mapping: JsonMapping) -> Compiled:
    assert mapping.topic is not None
    levels = mapping.topic.split("/")
    level = mapping.device if isinstance(mapping.device, int) else levels.index("+") if "+" in levels else None
    fixed = mapping.device if isinstance(mapping.device, str) else None
    if fixed is None and level is None:
        raise ValueError(f"mqtt_json: {mapping.topic}: name the device by a `+` level of the topic or by `device`")
    values = {f"{mapping.topic}/{s.where[0]}": s for s in _sources(mapping.values, per_topic=True)}
    patterns = list(values) or [mapping.topic]
    return Compiled(tuple(Route(p, level, fixed) for p in patterns), _sources(mapping.fields, per_topic=False),
                    values, tuple(mapping.ts.split(".")) if mapping.ts else None, mapping.ts_format,
                    ZoneInfo(mapping.tz))


@dataclass(frozen=True, eq=False)
class Mappings:
    """The meters file's mappings, compiled; which one a topic belongs to is looked up once per topic."""

    entries: tuple[Compiled, ...]
    _found: dict[str, tuple[Compiled, str] | None] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, mappings: tuple[JsonMapping, ...]) -> Mappings:
        return cls(tuple(_compile(part) for mapping in mappings for part in mapping.expand()))

    def find(self, topic: str) -> tuple[Compiled, str] | None:
        """The mapping of a topic and the subscription it came by."""
        if topic not in self._found:
            self._found[topic] = next(((m, r.pattern) for m in self.entries for r in m.routes if r.matches(topic)),
                                      None)
        return self._found[topic]


def routes(mappings: Mappings | None) -> Iterator[Route]:
    for entry in mappings.entries if mappings else ():
        yield from entry.routes


def _number(raw: object, where: str) -> Decimal:
    if isinstance(raw, Decimal):
        return raw
    if isinstance(raw, str):
        try:
            return Decimal(raw.strip())
        except InvalidOperation:
            pass
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


def _reading(device: str, values: dict[str, Decimal], sources: dict[str, Source], ts: datetime,
             received_at: datetime) -> Reading:
    scopes: dict[str, dict[str, float | int]] = {}
    for target, number in values.items():
        source = sources[target]
        scaled = number * source.scale
        integer = source.name in INTEGER_FIELDS and source.scope != "extra"
        scopes.setdefault(source.scope, {})[source.name] = int(scaled.to_integral_value()) if integer else float(scaled)
    return Reading.build({"meter_id": f"{DRIVER}:{device}", "driver": DRIVER, "ts": ts, "received_at": received_at,
                          "total": scopes.get("total", {}), "extra": scopes.get("extra", {}),
                          "phases": {p: v for p, v in scopes.items() if p in ("L1", "L2", "L3")}})


def decode(payload: bytes, *, received_at: datetime, device_id: str | None, topic: str, state: bytes,
           mappings: Mappings | None) -> tuple[list[Reading], bytes]:
    """One message → its reading (JSON), or the device's gathered values and, once complete, their reading."""
    found = mappings.find(topic) if mappings else None
    if found is None:
        raise UnknownField(f"mqtt_json: no mapping in the meters file for topic {shorten(topic)}")
    mapping, pattern = found
    device = device_id or mapping.routes[0].key(topic)
    if mapping.values:
        return _gather(payload, mapping.values[pattern], mapping, device, received_at, state)
    try:
        doc = json.loads(payload, parse_float=Decimal, parse_int=Decimal)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FrameError(f"mqtt_json: {topic}: not JSON: {shorten(payload)}") from exc
    values = {}
    for source in mapping.fields:
        raw = _at(doc, source.where)
        if raw is _ABSENT:
            if source.optional:
                continue
            raise MissingField(f"mqtt_json: {topic}: no value at {'.'.join(source.where)} (for {source.target})")
        if raw is not None:  # JSON null: the device has no value now
            values[source.target] = _number(raw, ".".join(source.where))
    if not values:
        raise MissingField(f"mqtt_json: {topic}: none of the mapped values is in the payload")
    ts = received_at
    if mapping.ts is not None and (raw := _at(doc, mapping.ts)) is not _ABSENT:
        ts = _time(raw, mapping)
    return [_reading(device, values, {s.target: s for s in mapping.fields}, ts, received_at)], b""


def _gather(payload: bytes, source: Source, mapping: Compiled, device: str, received_at: datetime,
            state: bytes) -> tuple[list[Reading], bytes]:
    """A round of one device's values: given out once every value the last round had has come (a device
    that never sends some of the mapped topics is not waited for), or when one comes again first (the
    first round; a value that stayed away). State: `{"at": ISO time of the last value, "values":
    {field: number}, "known": [the fields of the last round]}`."""
    try:
        number = _number(payload.decode().strip(), source.where[0])
    except UnicodeDecodeError as exc:
        raise FrameError(f"mqtt_json: {source.where[0]}: not text: {shorten(payload)}") from exc
    sources = {s.target: s for s in mapping.values.values()}
    kept = json.loads(state) if state else {"values": {}, "known": []}
    gathered, known = {t: Decimal(v) for t, v in kept["values"].items()}, set(kept["known"])
    readings = []
    if source.target in gathered:  # a new round began before this one was complete
        at = datetime.fromisoformat(kept["at"])
        readings.append(_reading(device, gathered, sources, at, at))
        gathered, known = {}, set(gathered)
    gathered[source.target] = number
    if known and known <= gathered.keys():
        readings.append(_reading(device, gathered, sources, received_at, received_at))
        gathered, known = {}, known | gathered.keys()
    out = {"at": received_at.isoformat(), "values": {t: str(v) for t, v in gathered.items()}, "known": sorted(known)}
    return readings, json.dumps(out).encode()
