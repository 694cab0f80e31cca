"""`agents.decode.SinkPositions`: what the file sink has already, after a kill and after a fresh Kafka."""

from __future__ import annotations

from typing import Any

from faust.types import TP

from pipeline import topics
from pipeline.agents.decode import SinkPositions
from pipeline.agents.state import Batch
from tests.agents.test_progress import Event

P0 = TP(topics.raw_topic("lines"), 0)
SOURCE = f"{topics.raw_topic('lines')}/0"


class Journaled:
    name = "files"

    def __init__(self, first_missing: int | None) -> None:
        self.first_missing = first_missing

    def written(self, source: str) -> int | None:
        return self.first_missing if source == SOURCE else None


def events(*offsets: int) -> list[Any]:
    return [Event(P0, offset) for offset in offsets]


def test_what_the_files_have_is_not_written_again_and_the_position_never_goes_back() -> None:
    has = SinkPositions(Journaled(first_missing=12), Batch({}, stored=lambda tp: 10))  # killed before its save
    batch = events(10, 11)
    assert [has.written(e) for e in batch] == [True, True]
    assert has.through(batch) == {SOURCE: 12}
    later = SinkPositions(Journaled(first_missing=12), Batch({}, stored=lambda tp: 10))
    assert [later.written(e) for e in events(11, 12, 13)] == [True, False, False]
    assert later.through(events(11, 12, 13)) == {SOURCE: 14}
    assert SinkPositions(Journaled(first_missing=12), Batch({}, stored=lambda tp: 10)).through(events(10)) == \
        {SOURCE: 12}  # a batch of records the files have already leaves the position where it was


def test_a_position_from_an_older_kafka_is_not_taken() -> None:
    has = SinkPositions(Journaled(first_missing=5000), Batch({}, stored=lambda tp: None))  # nothing applied yet
    assert [has.written(e) for e in events(0, 1)] == [False, False]
    assert has.through(events(0, 1)) == {SOURCE: 2}


def test_an_idempotent_sink_gets_everything() -> None:
    has = SinkPositions(Journaled(first_missing=None), Batch({}, stored=lambda tp: 10))
    assert not has.written(events(3)[0])
