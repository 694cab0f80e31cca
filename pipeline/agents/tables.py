"""Saving per-key state from a batch. Faust picks a table's changelog partition from the *current*
event, which `take_events` does not set per record (it is whatever the stream read last, or nothing
once the stream stops); the state of a key must go to the partition of the events it came from, or
a restarted worker would not find it. So the save runs as if while processing that key's last event."""

from __future__ import annotations

import json
import weakref
from collections.abc import Mapping
from typing import Any, Protocol

from faust.streams import _current_event
from faust.types import EventT


def save(table: Any, key: bytes, value: bytes, event: EventT) -> None:
    token = _current_event.set(weakref.ref(event))
    try:
        table[key] = value
    finally:
        _current_event.reset(token)


class State(Protocol):
    def dump(self) -> dict[str, Any]: ...


def save_all(table: Any, states: Mapping[bytes, State], events: Mapping[bytes, EventT]) -> None:
    """Every key's state (as compact JSON), each with the last event of its key."""
    for key, state in states.items():
        save(table, key, json.dumps(state.dump(), separators=(",", ":")).encode(), events[key])
