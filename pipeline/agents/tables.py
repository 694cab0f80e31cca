"""Saving per-key state from a batch. Faust picks a table's changelog partition from the *current*
event, which `take_events` does not set per record (it is whatever the stream read last, or nothing
once the stream stops); the state of a key must go to the partition of the events it came from, or
a restarted worker would not find it. So the save runs as if while processing that key's last event."""

from __future__ import annotations

import weakref
from typing import Any

from faust.streams import _current_event
from faust.types import EventT


def save(table: Any, key: bytes, value: bytes, event: EventT) -> None:
    token = _current_event.set(weakref.ref(event))
    try:
        table[key] = value
    finally:
        _current_event.reset(token)
