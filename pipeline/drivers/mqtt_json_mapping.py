"""The `[[mqtt_json]]` entries of the meters file (`JsonMapping`, presets expanded) and their compiled form
(`Mappings`): which topics to subscribe, which mapping a topic belongs to, where each value is. Checked when
the meters file is loaded, so a misspelt field, scope, preset or zone stops the program at start."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, model_validator

from pipeline.drivers.config import Route
from pipeline.drivers.mqtt_json_presets import PRESETS
from pipeline.models import Values

SCOPES: Final = frozenset({"total", "L1", "L2", "L3", "extra"})


class FieldSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str  # JSON path (`fields`) or topic suffix (`values`)
    scale: Decimal = Decimal(1)  # the value is multiplied by it (kWh → Wh: 1000)
    optional: bool = False


class JsonMapping(BaseModel):
    """One `[[mqtt_json]]` entry of the meters file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: str | None = None  # a shipped mapping (`mqtt_json_presets.PRESETS`); `topic` replaces its base
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
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"mqtt_json: no time zone {self.tz!r}") from exc
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
    path: str  # as written: JSON path(s) or topic suffix
    where: tuple[tuple[str, ...], ...]  # the JSON path's alternatives, each as its keys
    scale: Decimal
    optional: bool


def _sources(specs: dict[str, str | FieldSpec], per_topic: bool) -> tuple[Source, ...]:
    out = []
    for target, spec in specs.items():
        spec = FieldSpec(path=spec) if isinstance(spec, str) else spec
        scope, name = _target(target)
        where = () if per_topic else tuple(tuple(alternative.split(".")) for alternative in spec.path.split("|"))
        out.append(Source(target, scope, name, spec.path, where, spec.scale, spec.optional))
    return tuple(out)


@dataclass(frozen=True)
class Compiled:
    topic: str  # as in the meters file: names the mapping (its part of a device's state)
    routes: tuple[Route, ...]
    fields: tuple[Source, ...]
    values: dict[str, Source]  # subscription (the topic with its suffix) → source
    by_target: dict[str, Source]
    ts: tuple[str, ...] | None
    ts_format: str
    tz: ZoneInfo


def _compile(mapping: JsonMapping) -> Compiled:
    assert mapping.topic is not None
    topic, levels = mapping.topic, mapping.topic.split("/")
    fixed = mapping.device if isinstance(mapping.device, str) else None
    level = mapping.device if isinstance(mapping.device, int) else None if fixed else \
        levels.index("+") if "+" in levels else None
    if fixed is None and level is None:
        raise ValueError(f"mqtt_json: {topic}: name the device by a `+` level of the topic or by `device`")
    if fixed == "":
        raise ValueError(f"mqtt_json: {topic}: `device` is empty")
    if level is not None and not 0 <= level < (levels.index("#") if "#" in levels else len(levels)):
        raise ValueError(f"mqtt_json: {topic}: has no level {level} every topic has (levels count from 0)")
    if mapping.values and "#" in levels:
        raise ValueError(f"mqtt_json: {topic}: one value per topic needs the topic without `#`")
    values = {f"{topic}/{s.path}": s for s in _sources(mapping.values, per_topic=True)}
    fields = _sources(mapping.fields, per_topic=False)
    return Compiled(topic, tuple(Route(p, level, fixed) for p in list(values) or [topic]), fields, values,
                    {s.target: s for s in (*fields, *values.values())},
                    tuple(mapping.ts.split(".")) if mapping.ts else None, mapping.ts_format, ZoneInfo(mapping.tz))


@dataclass(frozen=True, eq=False)
class Mappings:
    """The meters file's mappings, compiled; which one a topic belongs to is looked up once per topic."""

    entries: tuple[Compiled, ...]
    _found: dict[str, tuple[Compiled, str] | None] = field(default_factory=dict, repr=False)

    @functools.cached_property
    def gathering(self) -> frozenset[str]:
        """The topics of the one-value-per-topic mappings: what a device's state may hold."""
        return frozenset(entry.topic for entry in self.entries if entry.values)

    @classmethod
    def of(cls, mappings: tuple[JsonMapping, ...]) -> Mappings:
        entries = tuple(_compile(part) for mapping in mappings for part in mapping.expand())
        per_topic = [entry.topic for entry in entries if entry.values]
        if twice := sorted({topic for topic in per_topic if per_topic.count(topic) > 1}):
            raise ValueError(f"mqtt_json: one value per topic under {', '.join(twice)} in two entries: put the "
                             "values into one (a preset's entry takes more `values`)")
        return cls(entries)

    def find(self, topic: str) -> tuple[Compiled, str] | None:
        """The mapping of a topic and the subscription it came by."""
        if topic not in self._found:
            self._found[topic] = next(((m, r.pattern) for m in self.entries for r in m.routes if r.matches(topic)),
                                      None)
        return self._found[topic]


def routes(mappings: Mappings | None) -> Iterator[Route]:
    for entry in mappings.entries if mappings else ():
        yield from entry.routes
