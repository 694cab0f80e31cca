"""Charge modes over MQTT, for `wattstream charger`: what a user (or Home Assistant) sets on
`wattstream/<site>/<charger>/mode/set` and `.../target/set`, and what the chargers' retained mode state
(`.../mode`, `.../target`, `.../mode/error`) and Home Assistant discovery look like. Pure;
`bridges.charger` runs it. The topics and payloads: docs/charging.md, "Charge modes".

A set becomes a `ModeCommand` in `meter.readings.site` (keyed by site): the worker applies it in order
with the site's readings and keeps it in the site's state, so it survives a restart of every process.
Only the chargers the controller drives (`Charger.driven`) have modes. A set for any other charger is
refused with a log line only: its topics are not wattstream's to write. For a driven charger, an
unknown mode or a target that cannot be parsed is refused with a log line and, retained, on
`mode/error`. Either way the mode in force stays.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from bridges.homeassistant import ha_id
from pipeline.models import MODES, ChargerDecision, ModeCommand
from pipeline.sites import Charger

PREFIX = "wattstream"
SETS = (f"{PREFIX}/+/+/mode/set", f"{PREFIX}/+/+/target/set")


def topic(charger: Charger, leaf: str) -> str:
    return f"{PREFIX}/{charger.site}/{charger.name}/{leaf}"


def driven(chargers: tuple[Charger, ...]) -> dict[tuple[str, str], Charger]:
    return {(c.site, c.name): c for c in chargers if c.driven}


def command(chargers: dict[tuple[str, str], Charger], mqtt_topic: str, payload: bytes | bytearray, now: datetime
            ) -> tuple[Charger | None, ModeCommand | str]:
    """The command a set message gives, or why it is refused (with the charger, where it is known)."""
    parts = mqtt_topic.split("/")
    charger = chargers.get((parts[1], parts[2])) if len(parts) == 5 else None
    if charger is None:
        return None, f"{mqtt_topic}: no [[charger]] the controller drives is named so (goe, wattstream, openevse " \
                     "with a control_topic)"
    text = payload.decode("utf-8", "replace").strip()
    fields: dict[str, Any]
    if parts[3] == "target":
        try:
            kwh = float(text)
        except ValueError:
            kwh = math.nan
        if not kwh >= 0:  # NaN too
            return charger, f"target {text[:40]!r} is not a number of kWh (0 or more)"
        fields = {"mode": "now", "target_kwh": kwh} if kwh > 0 else {"mode": "pv"}
    elif text.startswith("{"):
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as exc:
            return charger, f"mode {text[:40]!r} is not JSON: {exc.msg}"
        if not isinstance(fields, dict):
            return charger, "mode JSON must be an object"
    else:
        fields = {"mode": text}
    if fields.get("mode") not in MODES:
        return charger, f"mode {str(fields.get('mode'))[:40]!r} is not one of {', '.join(MODES)}"
    try:
        command_ = ModeCommand.model_validate({**fields, "site": charger.site, "charger": charger.name, "at": now})
    except ValidationError as exc:
        error = exc.errors(include_input=False)[0]
        where = ".".join(map(str, error["loc"]))
        return charger, f"mode {fields['mode']}: {where + ': ' if where else ''}{error['msg']}"
    if command_.until is not None and command_.until <= now:
        return charger, f"mode now until {command_.until.isoformat()}: that time has passed"
    return charger, command_


def states(charger: Charger, decision: ChargerDecision) -> list[tuple[str, bytes]]:
    """The retained state of a charger's mode and target (sent when it changed)."""
    return [(topic(charger, "mode"), decision.mode.encode()),
            (topic(charger, "target"), f"{decision.target_kwh or 0:g}".encode())]


def discovery(charger: Charger, prefix: str) -> list[tuple[str, bytes]]:
    """Home Assistant MQTT discovery: the mode as a `select`, the kWh target as a `number`."""
    node = ha_id(f"wattstream_{charger.site}_{charger.name}")
    device = {"identifiers": [node], "name": f"wattstream charger {charger.name}", "manufacturer": "wattstream",
              "model": charger.format}
    select = {"name": "Charge mode", "unique_id": f"{node}_mode", "default_entity_id": f"select.{node}_mode",
              "command_topic": topic(charger, "mode/set"), "state_topic": topic(charger, "mode"),
              "options": list(MODES), "device": device}
    number = {"name": "Charge now until (kWh)", "unique_id": f"{node}_target",
              "default_entity_id": f"number.{node}_target",
              "command_topic": topic(charger, "target/set"), "state_topic": topic(charger, "target"),
              "min": 0, "max": 200, "step": 0.5, "unit_of_measurement": "kWh", "mode": "box", "device": device}
    return [(f"{prefix}/select/{node}/mode/config", json.dumps(select).encode()),
            (f"{prefix}/number/{node}/target/config", json.dumps(number).encode())]
