"""Every record of an input partition applied once, in order, across stops, restarts and rebalances.

Faust alone does not give that. Measured with the restart test on Tansu (issue 4 note): records fetched
while a worker starts were dropped when Faust cleared its stream queues on resuming flow
(faust-streaming#596, open) and the agent went on with later offsets; records still queued at a stop or
rebalance are skipped *and acked*, and Faust then commits past them. Either way, records were never
applied and a restarted worker did not read them again.

So each batch agent keeps, per input partition, the next offset to apply in its changelogged table
(`agents.state`: the same table as its per-key state, written after the states of a batch, to the
same changelog partition). An event below it was applied already (a replay after Faust committed less
than was done) and is dropped; an event above it means records went missing: the consumer is sent
back to the expected offset and later events are dropped until that one arrives. The only gap accepted
is records deleted by retention before any worker read them (logged). Faust's own offset commits then
only decide where reading starts."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faust.types import TP, EventT

from pipeline.agents.faust_internals import as_current

log = logging.getLogger(__name__)

RESEEK_SECONDS = 1.0  # a partition still waiting for its missing record after this is sent back again


class Progress:
    def __init__(self, table: Any, earliest: Callable[[TP], Awaitable[int]],
                 seek: Callable[[TP, int], Awaitable[bool]], clock: Callable[[], float] = time.monotonic) -> None:
        self.table = table  # key(tp) → the next offset to apply, as decimal digits
        self._earliest = earliest  # the first offset the broker still has
        self._seek = seek  # False: the partition is not assigned here (any more)
        self._clock = clock
        self.waiting: dict[TP, tuple[int, float]] = {}  # partition → (offset sent back to, when)

    @staticmethod
    def key(tp: TP) -> bytes:
        return f"\0progress/{tp.topic}/{tp.partition}".encode()  # \0: no meter, device or site is named so

    async def admit(self, events: Sequence[EventT]) -> list[EventT]:
        """The events to apply now: each partition's next offsets in order, none twice, none past a gap."""
        admitted: list[EventT] = []
        expected: dict[TP, int] = {}
        for event in events:
            tp, offset = event.message.tp, event.message.offset
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
        """The saved next offset of `tp` to apply (None: nothing applied yet)."""
        value = self.table.get(self.key(tp))
        return int(value) if value else None

    def save(self, admitted: Sequence[EventT]) -> None:
        """After the admitted events are applied (and their state saved): the next offsets."""
        last = {event.message.tp: event for event in admitted}
        for tp, event in last.items():
            with as_current(event):
                self.table[self.key(tp)] = str(event.message.offset + 1).encode()

    async def retry(self) -> None:
        """Send back again the partitions whose missing record has not come yet: the consumer can drop the
        records read again (Faust's fetcher may still be handing out the earlier fetch and then takes them
        for old). Call it every `RESEEK_SECONDS`; a record that comes twice is dropped as a replay."""
        now = self._clock()
        for tp, (offset, since) in list(self.waiting.items()):
            if now - since >= RESEEK_SECONDS:
                await self._reread(tp, offset)

    async def _reread(self, tp: TP, offset: int) -> None:
        self.waiting[tp] = (offset, self._clock())
        if not await self._seek(tp, offset):  # rebalanced away: its new owner reads it from its progress
            self.waiting.pop(tp, None)
