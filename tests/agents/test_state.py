"""`agents.state`: which events an agent applies to a key's entry after a kill (pure: a dict for the
table; the real Faust, Tansu and kills are in tests/integration/test_crash_e2e.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from faust.types import TP

from pipeline import topics
from pipeline.agents.state import Batch, Entry, position, upstream
from tests.agents.test_progress import Event

IN = topics.READINGS


def event(partition: int, offset: int) -> Any:
    return Event(TP(IN, partition), offset)


def source(offset: int, index: int, partition: int = 0) -> dict[str, bytes]:
    return {topics.H_POSITION: position(topics.raw_topic("iammeter"), partition, offset, index)}


def test_an_event_the_saved_entry_holds_already_is_not_applied_again() -> None:
    table = {b"m": Entry({"n": 3}, at=(1, 5, 0)).dump()}
    batch = Batch(table)
    assert batch.take(b"m", event(1, 4)) is None
    assert batch.take(b"m", event(1, 5)) is None  # applied before the kill, the progress did not say so
    entry = batch.take(b"m", event(1, 6))
    assert entry is not None and entry.state == {"n": 3} and entry.at == (1, 6, 0)
    assert batch.take(b"m", event(1, 7)) is entry  # the same entry through the batch
    assert batch.take(b"x", event(1, 2)) is not None  # another key: its own offset


def test_an_offset_of_another_partition_says_nothing() -> None:
    batch = Batch({b"m": Entry(None, at=(1, 5, 0)).dump()})
    assert batch.take(b"m", event(0, 3)) is not None


def test_a_payload_of_an_envelope_the_saved_entry_holds_is_not_applied_again() -> None:
    """A key's payloads at items 0 and 2 of the envelope at offset 5 were applied and saved, the progress
    was not: read again, both are skipped and the key's later payloads are applied."""
    batch = Batch({b"m": Entry(None, at=(1, 5, 2)).dump()})
    assert batch.take(b"m", event(1, 5), item=0) is None
    assert batch.take(b"m", event(1, 5), item=2) is None
    assert batch.take(b"m", event(1, 5), item=3) is not None
    assert batch.take(b"m", event(1, 6)) is not None
    assert batch.entries[b"m"].at == (1, 6, 0)


def test_an_entry_saved_before_envelopes_holds_its_whole_record() -> None:
    batch = Batch({b"m": json.dumps({"s": None, "at": [1, 5], "up": {}}).encode()})
    assert batch.take(b"m", event(1, 5)) is None
    assert batch.take(b"m", event(1, 6)) is not None


def test_positions_of_an_envelope_s_payloads_follow_each_other_whatever_is_skipped() -> None:
    places = [upstream({topics.H_POSITION: position("t", 0, 7, index, item)})
              for item, index in ((0, 0), (0, 1), (1, 0), (5, 0), (5, 3))]
    assert places == sorted(places) and len(set(places)) == 5
    assert position("t", 0, 7, 4) == b"t/0/7/4"  # a plain record's outputs as before envelopes


def test_an_output_sent_again_upstream_is_known_by_its_position() -> None:
    batch = Batch({})
    assert batch.take(b"m", event(0, 0), source(10, 0)) is not None
    assert batch.take(b"m", event(0, 1), source(10, 1)) is not None
    assert batch.take(b"m", event(0, 2), source(10, 0)) is None  # sent again after a kill upstream
    assert batch.take(b"m", event(0, 3), source(10, 1)) is None
    assert batch.take(b"m", event(0, 4), source(9, 7)) is None
    assert batch.take(b"m", event(0, 5), source(3, 0, partition=1)) is not None  # another upstream partition
    assert batch.take(b"m", event(0, 6), source(11, 0)) is not None
    assert batch.take(b"m", event(0, 7)) is not None  # produced by someone else: taken as it comes
    assert batch.entries[b"m"].taken == {"meter.raw.iammeter/0": (11, 0), "meter.raw.iammeter/1": (3, 0)}


def test_a_malformed_position_is_taken_as_no_position() -> None:
    assert upstream({topics.H_POSITION: b"nonsense"}) is None
    assert upstream({topics.H_POSITION: b"t/0/x/1"}) is None
    assert upstream({}) is None and upstream(None) is None


def save(batch: Batch) -> list[tuple[int, bytes, bytes]]:
    """A checkpoint's entry writes, into the table (`agents.changelog` does so once Kafka has them)."""
    writes = batch.changes()
    batch.table.update({key: value for _, key, value in writes})
    return writes


def test_saved_entries_round_trip_each_to_the_partition_of_its_keys_last_event() -> None:
    table: dict[bytes, bytes] = {}
    batch = Batch(table)
    for key, partition, offset in ((b"a", 2, 0), (b"b", 3, 0), (b"a", 2, 1)):
        entry = batch.take(key, event(partition, offset), source(offset, 0))
        assert entry is not None
        entry.state = {"last": offset, "big": 2**80}  # exact integers survive
    writes = save(batch)
    assert sorted((key, partition) for partition, key, _ in writes) == [(b"a", 2), (b"b", 3)]
    again = Entry.load(table[b"a"])
    assert (again.state, again.at) == ({"last": 1, "big": 2**80}, (2, 1, 0))
    assert again.taken == {"meter.raw.iammeter/0": (1, 0)}
    assert Batch(table).take(b"a", event(2, 1)) is None


@dataclass
class Live:
    count: int = 0

    def dump(self) -> dict[str, int]:
        return {"count": self.count}


def test_entries_live_between_checkpoints_and_a_drop_goes_back_to_the_table() -> None:
    table: dict[bytes, bytes] = {}
    entries = Batch(table)
    for offset in range(3):
        entry = entries.take(b"a", event(0, offset))
        assert entry is not None
        entry.state = entry.state if isinstance(entry.state, Live) else Live()
        entry.state.count += 1
    save(entries)  # a checkpoint: the live state's dump
    assert Entry.load(table[b"a"]).state == {"count": 3}
    table_after_checkpoint = dict(table)
    assert save(entries) == []  # nothing changed since: nothing written
    assert table == table_after_checkpoint
    entry = entries.take(b"a", event(0, 3))
    assert entry is not None and entry.state.count == 3  # the live object, not the JSON
    entry.state.count += 1
    entries.drop()  # revoked before the next checkpoint: forgotten
    entry = entries.take(b"a", event(0, 3))
    assert entry is not None and entry.state == {"count": 3} and entry.at == (0, 3, 0)
