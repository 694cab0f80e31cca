"""Every record of an input partition applied once, in order, across stops, restarts and rebalances.

Faust alone does not give that. Measured with the restart test on Tansu: records fetched while a worker
starts were dropped when Faust cleared its stream queues on resuming flow
(https://github.com/faust-streaming/faust/issues/596) and the agent went on with later offsets; records
still queued at a stop or rebalance are skipped *and acked*, and Faust then commits past them. Either
way, records were never applied and a restarted worker did not read them again.

So each batch agent keeps, per input partition, the next offset to apply in its changelogged table
(`agents.state`: the same table as its per-key state, written after the states of a batch), and a
history (`new_histories`: a random id saved before anything of the partition is applied) that tells a
Kafka started afresh from the one a sink's position (`sinks.Position`) was written against. What is
done with an event below the progress, a gap above it (`admit`, `retry`), a partition Faust committed
past (`catch_up`) and records deleted by retention: docs/architecture.md, "Nothing lost: in the
worker" and "What is not covered"."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faust.types import TP, EventT

from pipeline.agents.changelog import Write

log = logging.getLogger(__name__)

PROGRESS, HISTORY = b"\0progress/", b"\0history/"  # \0: no meter, device or site is named so
RESEEK_SECONDS = 1.0  # a partition still waiting for its missing record after this is sent back again
STUCK_SECONDS = 3.0  # a partition with records to apply and none arriving for this long is sent back


class Progress:
    def __init__(self, table: Any, earliest: Callable[[TP], Awaitable[int]],
                 seek: Callable[[TP, int], Awaitable[bool]], clock: Callable[[], float] = time.monotonic) -> None:
        self.table = table  # key(tp) → the next offset to apply, as decimal digits
        self._earliest = earliest  # the first offset the broker still has
        self._seek = seek  # False: the partition is not assigned here (any more)
        self._clock = clock
        self.waiting: dict[TP, tuple[int, float]] = {}  # partition → (offset sent back to, when)
        self.arrived: dict[TP, float] = {}  # partition → when an event of it last arrived (or was awaited)
        self.applied: dict[TP, int] = {}  # partition → the next offset to apply, newer than the table
        self._last: dict[TP, EventT[bytes]] = {}  # partition → its last applied event, since the last checkpoint

    @staticmethod
    def key(tp: TP) -> bytes:
        return PROGRESS + f"{tp.topic}/{tp.partition}".encode()

    @staticmethod
    def named(key: bytes, prefixes: tuple[bytes, ...] = (PROGRESS, HISTORY)) -> tuple[str, int] | None:
        """(topic, partition) a progress or history key (one of `prefixes`) is of; None for any other key."""
        for prefix in prefixes:
            if key.startswith(prefix):
                topic, partition = key[len(prefix):].decode().rsplit("/", 1)
                return topic, int(partition)
        return None

    @staticmethod
    def is_own(key: bytes) -> bool:
        """A key of the progress or history of a partition (not a device, meter or site)."""
        return key.startswith(b"\0")

    @staticmethod
    def history_key(tp: TP) -> bytes:
        return HISTORY + f"{tp.topic}/{tp.partition}".encode()

    def history(self, tp: TP) -> str | None:
        """The id of `tp`'s history in this Kafka (None: nothing of it was read yet)."""
        value = self.table.get(self.history_key(tp))
        return value.decode() if value else None

    def new_histories(self, admitted: Sequence[EventT[bytes]]) -> list[Write]:
        """The history to save for each partition of `admitted` that has none, to its changelog partition,
        before the events are applied."""
        first: dict[TP, EventT[bytes]] = {}
        for event in admitted:
            first.setdefault(event.message.tp, event)
        return [(event.message.partition, self.history_key(tp), uuid.uuid4().hex.encode())
                for tp, event in first.items() if self.history(tp) is None]

    async def admit(self, events: Sequence[EventT[bytes]]) -> list[EventT[bytes]]:
        """The events to apply now: each partition's next offsets in order, none twice, none past a gap."""
        admitted: list[EventT[bytes]] = []
        expected: dict[TP, int] = {}
        now = self._clock()
        for event in events:
            tp, offset = event.message.tp, event.message.offset
            self.arrived[tp] = now
            if tp not in expected:
                stored, waiting = self.stored(tp), self.waiting.get(tp)
                expected[tp] = stored if stored is not None else waiting[0] if waiting else await self._earliest(tp)
            if offset > expected[tp]:
                if tp in self.waiting:
                    continue  # fetched before it was sent back; `retry` sends it back again if need be
                earliest = await self._earliest(tp)
                if earliest > expected[tp]:
                    log.warning("%s[%d]: offsets %d..%d were deleted by retention before they were read",
                                tp.topic, tp.partition, expected[tp], earliest - 1)
                    expected[tp] = earliest
            if offset == expected[tp]:
                if self.waiting.pop(tp, None) is not None:
                    log.info("%s[%d]: offset %d read again, going on", tp.topic, tp.partition, offset)
                admitted.append(event)
                expected[tp] += 1
            elif offset > expected[tp]:
                log.warning("%s[%d]: offset %d arrived while %d was expected (records dropped by the consumer); "
                            "reading again from %d", tp.topic, tp.partition, offset, expected[tp], expected[tp])
                await self._reread(tp, expected[tp])
        return admitted

    def stored(self, tp: TP) -> int | None:
        """The next offset of `tp` to apply (None: nothing applied yet)."""
        if tp in self.applied:
            return self.applied[tp]
        value = self.table.get(self.key(tp))
        return int(value) if value else None

    def advance(self, admitted: Sequence[EventT[bytes]]) -> None:
        """The admitted events are applied (in memory)."""
        now = self._clock()
        for event in admitted:
            self.applied[event.message.tp] = event.message.offset + 1
            self._last[event.message.tp] = event
            self.arrived[event.message.tp] = now  # (a long batch is no silence)

    def changes(self) -> list[Write]:
        """A checkpoint's writes once Kafka has the entries' (`Batch.changes`): the next offsets, each to
        the changelog partition of its partition's last event."""
        writes = [(event.message.partition, self.key(tp), str(self.applied[tp]).encode())
                  for tp, event in self._last.items()]
        self._last.clear()
        return writes

    def drop(self) -> None:
        """Forget what is not saved (the partitions were revoked, or a batch or checkpoint failed)."""
        self.applied.clear()
        self._last.clear()
        self.waiting.clear()
        self.arrived.clear()

    async def retry(self) -> None:
        """Send back again the partitions whose missing record has not come yet: the consumer can drop the
        records read again (Faust's fetcher may still be handing out the earlier fetch and then takes them
        for old). Call it every `RESEEK_SECONDS`; a record that comes twice is dropped as a replay."""
        now = self._clock()
        for tp, (offset, since) in list(self.waiting.items()):
            if now - since >= RESEEK_SECONDS:
                await self._reread(tp, offset)

    async def catch_up(self, tp: TP, end: int) -> None:
        """Send `tp` back to its saved progress when records up to `end` (its high watermark) are not applied
        and none has arrived for `STUCK_SECONDS` (call it every `RESEEK_SECONDS` for each assigned partition)."""
        if tp in self.waiting:
            return
        now = self._clock()
        stored = self.stored(tp)
        if stored is None and end <= 0:
            return  # an empty partition (no request to the broker: this runs every second for each)
        applied = stored if stored is not None else await self._earliest(tp)
        if applied >= end:
            self.arrived[tp] = now  # nothing to apply: a later gap counts from here
            return
        if now - self.arrived.setdefault(tp, now) >= STUCK_SECONDS:
            log.warning("%s[%d]: offsets %d..%d not applied and nothing arrived for %.0f s (Faust committed past "
                        "them); reading again from %d", tp.topic, tp.partition, applied, end - 1, STUCK_SECONDS,
                        applied)
            self.arrived[tp] = now
            await self._reread(tp, applied)

    async def _reread(self, tp: TP, offset: int) -> None:
        self.waiting[tp] = (offset, self._clock())
        if not await self._seek(tp, offset):  # rebalanced away: its new owner reads it from its progress
            self.waiting.pop(tp, None)
