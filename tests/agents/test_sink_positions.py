"""`agents.decode.SinkPositions`: what the file sink has already, after a kill and after a fresh Kafka."""

from __future__ import annotations

from typing import Any

from faust.types import TP

from pipeline import topics
from pipeline.agents.decode import SinkPositions
from pipeline.agents.state import Batch
from pipeline.sinks import Position
from tests.agents.test_progress import Event

P0 = TP(topics.raw_topic("lines"), 0)
SOURCE = f"{topics.raw_topic('lines')}/0"


class Journaled:
    name = "files"

    def __init__(self, kept: Position | None) -> None:
        self.kept = kept

    def written(self, source: str) -> Position | None:
        return self.kept if source == SOURCE else None


def events(*offsets: int) -> list[Any]:
    return [Event(P0, offset) for offset in offsets]


def batch(history: str | None = "h1") -> Batch:
    return Batch({}, history=lambda tp: history)


def test_what_the_files_have_is_not_written_again_and_the_position_never_goes_back() -> None:
    has = SinkPositions(Journaled(Position("h1", 12)), batch())  # killed before the agent saved its state
    assert [has.written(e) for e in events(10, 11)] == [True, True]
    assert has.through(events(10, 11)) == {SOURCE: ("h1", 12)}
    later = SinkPositions(Journaled(Position("h1", 12)), batch())
    assert [later.written(e) for e in events(11, 12, 13)] == [True, False, False]
    assert later.through(events(11, 12, 13)) == {SOURCE: ("h1", 14)}
    assert SinkPositions(Journaled(Position("h1", 12)), batch()).through(events(10)) == \
        {SOURCE: ("h1", 12)}  # a batch of records the files have already leaves the position where it was


def test_a_position_of_another_history_is_not_taken() -> None:
    has = SinkPositions(Journaled(Position("h0", 5000)), batch("h1"))  # a Kafka started afresh
    assert [has.written(e) for e in events(0, 1)] == [False, False]
    assert has.through(events(0, 1)) == {SOURCE: ("h1", 2)}


def test_an_idempotent_sink_gets_everything_and_a_partition_without_history_gets_no_position() -> None:
    assert not SinkPositions(Journaled(None), batch()).written(events(3)[0])
    assert SinkPositions(Journaled(Position("h1", 12)), batch(None)).through(events(3)) == {}
