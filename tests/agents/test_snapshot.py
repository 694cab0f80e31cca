"""`embedded.snapshot`'s pure part: which changelog records go into a new Kafka, and how (the Tansu side is
in tests/integration/test_snapshot_e2e.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from faust.types import TP

from pipeline import envelope, topics
from pipeline.agents.progress import Progress
from pipeline.agents.state import Entry
from pipeline.envelope import Item
from wattstream.embedded.run import Kafka
from wattstream.embedded.servers import Server
from wattstream.embedded.snapshot import Kept, Tables, is_changelog, is_input, unapplied

CHANGELOG = "wattstream-decode-iammeter-state-changelog"
RAW = TP(topics.raw_topic("iammeter"), 1)


def entry(state: object, at: tuple[int, int] | None, up: dict[str, tuple[int, int]] | None = None) -> bytes:
    return Entry(state, at, up or {}).dump()


def test_the_last_state_of_each_key_without_its_positions_and_the_progress_apart() -> None:
    records = [
        Kept(CHANGELOG, 1, b"dev-a", entry({"n": 1}, (1, 10), {"meter.raw.x/0": (4, 0)})),
        Kept(CHANGELOG, 1, Progress.history_key(RAW), b"5f3e"),
        Kept(CHANGELOG, 1, b"dev-a", entry({"n": 2}, (1, 11))),
        Kept(CHANGELOG, 0, b"dev-b", entry({"n": 7}, (0, 3))),
        Kept(CHANGELOG, 1, Progress.key(RAW), b"12"),
        Kept(CHANGELOG, 1, b"dev-c", None),  # a deleted key
    ]
    folded = Tables()
    for record in records:
        folded.add(record)
    kept, progress, held = folded.result()
    assert [(k.partition, k.key, json.loads(k.value or b"")) for k in kept] == [
        (1, b"dev-a", {"s": {"n": 2}, "at": None, "up": {}}),
        (0, b"dev-b", {"s": {"n": 7}, "at": None, "up": {}}),
    ]
    assert progress == {(RAW.topic, 1): 12}
    # what each key holds, in the input topic its table's progress and history name: a record it holds
    # already (an entry saved after the last progress that reached Kafka) is not carried
    assert held == {(RAW.topic, 1, b"dev-a"): 11, (RAW.topic, 0, b"dev-b"): 3}


def test_an_input_record_is_carried_without_its_position_and_survives_the_file() -> None:
    record = Kept(topics.SITE_READINGS, 2, b"demo", b"{}", ((topics.H_POSITION, b"meter.raw.x/0/4/0"),
                                                          (topics.H_DRIVER, b"iammeter")))
    carried = unapplied(4, record, {})
    assert carried is not None and carried.headers == ((topics.H_DRIVER, b"iammeter"),)
    assert Kept.load(json.loads(json.dumps(carried.dump()))) == carried
    assert Kept.load(json.loads(json.dumps(Kept("t", 0, None, b"\x00\xff").dump()))) == Kept("t", 0, None, b"\x00\xff")


def test_what_a_key_s_state_holds_is_not_carried_also_inside_an_envelope() -> None:
    raw = topics.raw_topic("iammeter")
    held = {(raw, 0, b"a"): 7, (raw, 0, b"b"): 6}
    assert unapplied(7, Kept(raw, 0, b"a", b"x"), held) is None
    assert unapplied(8, Kept(raw, 0, b"a", b"x"), held) == Kept(raw, 0, b"a", b"x")
    items = [Item(b"a", b"1", ()), Item(b"b", b"2", ()), Item(b"c", b"3", ()), Item(b"a", b"4", ())]
    headers = ((topics.H_ENVELOPE, envelope.VERSION),)
    carried = unapplied(7, Kept(raw, 0, None, envelope.pack(items), headers), held)
    assert carried is not None and envelope.unpack(carried.value or b"") == items[1:3]
    assert unapplied(6, Kept(raw, 0, None, envelope.pack(items[:2]), headers), held) is None
    lone = (topics.H_DRIVER, b"iammeter")  # one payload left: a plain record, as the bridge sends one
    assert unapplied(7, Kept(raw, 0, None, envelope.pack([items[0], Item(b"c", b"3", (lone,))]), headers, 5),
                     held) == Kept(raw, 0, b"c", b"3", (lone,), 5)
    whole = Kept(raw, 0, None, envelope.pack(items), headers)
    assert unapplied(8, whole, held) == whole


def test_which_topics_are_tables_and_which_are_inputs() -> None:
    assert is_changelog(CHANGELOG, "wattstream") and not is_changelog(CHANGELOG, "other")
    assert not is_changelog("wattstream-__assignor-__leader", "wattstream")
    assert is_input(RAW.topic) and is_input(topics.SITE_READINGS)
    assert not any(is_input(t) for t in (topics.READINGS, topics.SURPLUS, topics.AVERAGES_10M, CHANGELOG))


def test_a_snapshot_this_version_cannot_read_is_set_aside_and_the_run_starts_without_it(tmp_path: Path) -> None:
    path = tmp_path / "kafka-snapshot.jsonl"
    path.write_text('{"version": 0, "partitions": {}}\n')
    kafka = Kafka(Server("tansu", 1, None, tmp_path / "tansu.log"), tmp_path, "wattstream", path)  # type: ignore[arg-type]
    asyncio.run(kafka.restore())  # before any connection to the (absent) broker
    assert not path.exists() and path.with_suffix(".unread").read_text().startswith('{"version": 0')
