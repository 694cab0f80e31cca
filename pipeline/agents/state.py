"""Per-key agent state that says by itself which input it has applied, so that no kill between two
saves makes a restarted worker skip or repeat input.

Each agent keeps one changelogged table. Every key in it (a decode agent's raw record key: a device id,
else the origin, and a meter id on `meter.raw.reading`; the surplus agent's: a site) has one `Entry`:
the agent's state for that key, the input position (partition, offset, and the payload's place in an
envelope) of the last event applied to it, and, for input another agent produced, the last upstream
position taken from each upstream partition. The partitions' progress and history (`agents.progress`)
live in the same table. `Batch.take` skips an event its key's entry holds already, or an upstream
position it has taken; `Batch.changes` gives each changed entry for the changelog partition of its
key's last event (`agents.changelog` writes them), so that a restarted worker finds it there. Why each
piece is there, and how checkpoints, kills and repeats play out: docs/architecture.md, "Nothing
doubled: each record applied once" and "Nothing doubled: outputs repeated after a kill".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP, EventT

from pipeline import topics
from pipeline.agents.changelog import Write

ITEM_SHIFT = 20  # a payload gives fewer than 2**20 readings (a raw record is at most 1 MiB)


def position(tp_topic: str, partition: int, offset: int, index: int, item: int = 0) -> bytes:
    """The `topics.H_POSITION` header of an output: `<topic>/<partition>/<offset>/<index>`, the index of
    the `index`th output of payload `item` of an envelope being `item << ITEM_SHIFT | index` (the same
    whichever payloads of the envelope a restarted worker skips; a plain record's payload is item 0)."""
    return f"{tp_topic}/{partition}/{offset}/{item << ITEM_SHIFT | index}".encode()


def upstream(headers: Mapping[str, bytes] | None) -> tuple[str, tuple[int, int]] | None:
    """(`<topic>/<partition>`, (offset, index)) of a record's `H_POSITION` header; None without one
    (a record someone else produced: taken as it comes)."""
    raw = headers.get(topics.H_POSITION) if headers else None
    if not raw:
        return None
    try:
        source, offset, index = raw.decode().rsplit("/", 2)
        return source, (int(offset), int(index))
    except (UnicodeDecodeError, ValueError):
        return None


@dataclass
class Entry:
    # The agent's own state of the key: JSON as loaded, or the live object the agent made of it (kept as
    # it is between checkpoints; what its `dump()` returns is saved)
    state: Any = None
    # (input partition, offset, item) of the last event applied; item: its place in an envelope
    # (`pipeline.envelope`; 0 for a plain record)
    at: tuple[int, int, int] | None = None
    taken: dict[str, tuple[int, int]] = field(default_factory=dict)  # upstream partition → last (offset, index)

    def dump(self) -> bytes:
        state = self.state.dump() if hasattr(self.state, "dump") else self.state
        return json.dumps({"s": state, "at": self.at, "up": self.taken}, separators=(",", ":")).encode()

    @classmethod
    def load(cls, raw: bytes) -> Entry:
        data = json.loads(raw)
        at = data["at"]  # [partition, offset] before envelopes: a plain record's item 0
        return cls(data["s"], (at[0], at[1], at[2] if len(at) > 2 else 0) if at else None,
                   {k: tuple(v) for k, v in data["up"].items()})



class Batch:
    """The entries an agent has taken since it last dropped them (`drop`: its partitions were revoked, or a
    batch or checkpoint failed), newer than the table until a checkpoint writes the ones changed since the
    last (`changes`; the progress once Kafka has them). `history`: the history of an input partition
    (`Progress.history`)."""

    def __init__(self, table: Any, history: Callable[[TP], str | None] = lambda tp: None) -> None:
        self.table = table
        self.history = history
        self.entries: dict[bytes, Entry] = {}
        self._last: dict[bytes, EventT[bytes]] = {}  # changed since the last checkpoint → its last event

    def take(self, key: bytes, event: EventT[bytes], headers: Mapping[str, bytes] | None = None,
             item: int = 0) -> Entry | None:
        """The entry of `key` to apply `event` (its payload `item` if it is an envelope) to, or None when
        it must not be applied: the key's saved state holds it already (read again after a kill), or it
        repeats an upstream output the key took already (sent again after a kill upstream)."""
        entry = self.entries.get(key)
        if entry is None:
            saved = self.table.get(key)
            entry = Entry.load(saved) if saved else Entry()
        message = event.message
        if entry.at is not None and entry.at[0] == message.partition and (message.offset, item) <= entry.at[1:]:
            return None
        came = upstream(headers)
        if came is not None:
            source, place = came
            seen = entry.taken.get(source)
            if seen is not None and place <= seen:
                return None
            entry.taken[source] = place
        entry.at = (message.partition, message.offset, item)
        self.entries[key], self._last[key] = entry, event
        return entry

    def changes(self) -> list[Write]:
        """A checkpoint's writes: each entry changed since the last checkpoint, to the changelog partition
        of its key's last event (from now on they count as saved)."""
        writes = [(event.message.partition, key, self.entries[key].dump()) for key, event in self._last.items()]
        self._last.clear()
        return writes

    def drop(self) -> None:
        """Forget what is not saved: the partitions went to another worker (or come back from one), which
        goes on from the table, or a batch or checkpoint failed (what came after the last one is applied
        again)."""
        self.entries.clear()
        self._last.clear()
