"""`Progress`: which events of a partition an agent applies, with a plain dict for the table and a
recording consumer (the Faust and Tansu side is in tests/integration/test_windows_e2e.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from faust.types import TP

from pipeline import topics
from pipeline.agents.progress import RESEEK_SECONDS, STUCK_SECONDS, Progress

A, B = TP(topics.READINGS, 0), TP(topics.READINGS, 1)
KEY_A, KEY_B = Progress.key(A), Progress.key(B)


@dataclass
class Message:
    tp: TP
    offset: int

    @property
    def partition(self) -> int:
        return self.tp.partition


class Event:  # weak-referenceable, like Faust's events
    def __init__(self, tp: TP, offset: int) -> None:
        self.message = Message(tp, offset)


@dataclass
class Consumer:
    earliest: dict[TP, int] = field(default_factory=dict)
    assigned: set[TP] = field(default_factory=lambda: {A, B})
    seeks: list[tuple[TP, int]] = field(default_factory=list)
    now: float = 0.0

    async def first(self, tp: TP) -> int:
        return self.earliest.get(tp, 0)

    async def seek(self, tp: TP, offset: int) -> bool:
        if tp not in self.assigned:
            return False
        self.seeks.append((tp, offset))
        return True


def progress(consumer: Consumer, table: dict[bytes, bytes] | None = None) -> Progress:
    return Progress(table if table is not None else {}, earliest=consumer.first, seek=consumer.seek,
                    clock=lambda: consumer.now)


def save(p: Progress) -> None:
    """A checkpoint's progress writes, into the table (`agents.changelog` does so once Kafka has them)."""
    p.table.update({key: value for _, key, value in p.changes()})


def admit(p: Progress, *events: tuple[TP, int]) -> list[tuple[TP, int]]:
    admitted = asyncio.run(p.admit([Event(tp, offset) for tp, offset in events]))
    p.advance(admitted)
    save(p)
    return [(e.message.tp, e.message.offset) for e in admitted]


def offsets(tp: TP, *numbers: int) -> list[tuple[TP, int]]:
    return [(tp, n) for n in numbers]


def test_in_order_from_the_first_offset_each_once() -> None:
    consumer, table = Consumer(), {}
    p = progress(consumer, table)
    assert admit(p, *offsets(A, 0, 1, 2)) == offsets(A, 0, 1, 2)
    assert table == {KEY_A: b"3"}
    assert admit(p, *offsets(A, 1, 2, 3, 4)) == offsets(A, 3, 4)  # a replay: only what is new
    assert table == {KEY_A: b"5"} and not consumer.seeks


def test_a_gap_sends_the_partition_back_and_waits_for_the_missing_offset() -> None:
    consumer = Consumer()
    p = progress(consumer, {KEY_A: b"3"})
    assert admit(p, *offsets(A, 5, 6, 7)) == []  # 3 and 4 were dropped by the consumer
    assert consumer.seeks == [(A, 3)]  # once, not per event
    consumer.earliest[A] = 99  # no more broker queries while waiting
    assert admit(p, *offsets(A, 8)) == [] and consumer.seeks == [(A, 3)]
    assert admit(p, *offsets(A, 3, 4, 5, 6, 7, 8)) == offsets(A, 3, 4, 5, 6, 7, 8)
    assert p.waiting == {}


def test_the_head_of_a_partition_never_read_before_counts_too() -> None:
    consumer = Consumer(earliest={A: 10})
    p = progress(consumer)
    assert admit(p, *offsets(A, 12, 13)) == []  # 10 and 11 dropped at start-up (faust-streaming#596)
    assert consumer.seeks == [(A, 10)]
    assert admit(p, *offsets(A, 10, 11, 12)) == offsets(A, 10, 11, 12)


def test_offsets_deleted_by_retention_are_the_one_gap_accepted() -> None:
    consumer = Consumer(earliest={A: 40})
    p = progress(consumer, {KEY_A: b"3"})
    assert admit(p, *offsets(A, 40, 41)) == offsets(A, 40, 41) and not consumer.seeks


def test_partitions_are_independent() -> None:
    consumer = Consumer()
    p = progress(consumer, {KEY_A: b"2", KEY_B: b"7"})
    events = [(A, 2), (B, 9), (A, 3), (B, 10), (A, 4)]
    assert admit(p, *events) == offsets(A, 2, 3, 4)
    assert consumer.seeks == [(B, 7)] and set(p.waiting) == {B}


def test_retry_sends_back_again_only_after_a_while_and_not_what_moved_away() -> None:
    consumer = Consumer()
    p = progress(consumer, {KEY_A: b"3", KEY_B: b"3"})
    admit(p, (A, 9), (B, 9))
    assert consumer.seeks == [(A, 3), (B, 3)]
    consumer.now = RESEEK_SECONDS / 2
    asyncio.run(p.retry())
    assert len(consumer.seeks) == 2
    consumer.now, consumer.assigned = RESEEK_SECONDS, {A}  # B was rebalanced to another worker
    asyncio.run(p.retry())
    assert consumer.seeks[2:] == [(A, 3)] and set(p.waiting) == {A}


def test_saved_to_the_changelog_partition_of_each_partition_once_per_checkpoint() -> None:
    p = progress(Consumer())
    p.advance(asyncio.run(p.admit([Event(A, 0), Event(B, 0), Event(A, 1)])))
    assert p.changes() == [(A.partition, KEY_A, b"2"), (B.partition, KEY_B, b"1")]
    assert p.changes() == []  # nothing applied since


def test_a_partition_with_records_to_apply_and_none_arriving_is_sent_back() -> None:
    consumer = Consumer(earliest={B: 4})
    p = progress(consumer, {KEY_A: b"3"})
    asyncio.run(p.catch_up(A, 10))  # first seen lagging: the clock starts
    consumer.now += STUCK_SECONDS - 0.1
    asyncio.run(p.catch_up(A, 10))
    assert consumer.seeks == []
    consumer.now += 0.1
    asyncio.run(p.catch_up(A, 10))
    asyncio.run(p.catch_up(B, 9))  # nothing applied yet: from the earliest offset, once it waited too
    consumer.now += STUCK_SECONDS
    asyncio.run(p.catch_up(B, 9))
    assert consumer.seeks == [(A, 3), (B, 4)]
    assert admit(p, *offsets(A, 3, 4)) == offsets(A, 3, 4)  # then as after any gap


def test_no_catch_up_while_records_arrive_or_nothing_is_missing() -> None:
    consumer = Consumer()
    p = progress(consumer, {KEY_A: b"3"})
    for _ in range(5):
        assert admit(p, *offsets(A, int(p.stored(A) or 0))) != []
        asyncio.run(p.catch_up(A, 100))  # behind, but busy applying what arrives
        consumer.now += STUCK_SECONDS / 2
    asyncio.run(p.catch_up(A, int(p.stored(A) or 0)))  # caught up
    consumer.now += 10 * STUCK_SECONDS
    asyncio.run(p.catch_up(A, int(p.stored(A) or 0)))
    assert consumer.seeks == []
    asyncio.run(p.catch_up(A, 100))  # a new record: the clock starts now, not at the last event
    assert consumer.seeks == []


def test_progress_is_in_memory_until_saved_and_a_drop_goes_back_to_the_table() -> None:
    consumer, table = Consumer(), {KEY_A: b"3"}
    p = progress(consumer, table)
    p.advance(asyncio.run(p.admit([Event(A, 3), Event(A, 4)])))
    assert p.stored(A) == 5 and table == {KEY_A: b"3"}
    p.drop()  # revoked before the checkpoint
    assert p.stored(A) == 3
    p.advance(asyncio.run(p.admit([Event(A, 3)])))
    save(p)
    assert table == {KEY_A: b"4"} and p.stored(A) == 4


def test_a_partition_without_a_history_gets_one_before_its_first_events_are_applied() -> None:
    table: dict[bytes, bytes] = {}
    p = progress(Consumer(), table)
    first, other = Event(A, 7), Event(B, 3)
    given = p.new_histories([first, other, Event(A, 8)])
    assert [(partition, key) for partition, key, _ in given] == [(A.partition, Progress.history_key(A)),
                                                                  (B.partition, Progress.history_key(B))]
    assert given[0][2] != given[1][2] and p.history(A) is None  # saved by the agent (confirmed), not here
    table.update({key: value for _, key, value in given})
    assert p.history(A) == given[0][2].decode()
    assert p.new_histories([Event(A, 9)]) == []  # kept, also after a kill (it is in the table)
