"""Taking turns on the worker's event loop.

Every agent of a worker runs on one event loop, and so do the producer's sends and the hand-over of
fetched records. A decode agent's part of a batch is pure CPU between its awaits (which seldom wait:
appending to a record batch does not), so a part of a thousand payloads held the loop for a quarter of
a second while the surplus agent, with a grid reading a charger waits for, could not run. A decode
agent therefore hands the loop on every `SLICE_SECONDS` between two payloads (not within a checkpoint,
whose encoding takes up to a second with 10,000 meters: docs/performance.md has the figures).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

SLICE_SECONDS = 0.005


class Turns:
    """`await turns.share()` between two pieces of work: the loop runs what else is ready once
    `seconds` have passed (by `clock`) since the agent last let it."""

    def __init__(self, seconds: float = SLICE_SECONDS, clock: Callable[[], float] = time.perf_counter) -> None:
        self._seconds, self._clock = seconds, clock
        self._until = clock() + seconds

    async def share(self) -> None:
        if self._clock() >= self._until:
            await asyncio.sleep(0)
            self._until = self._clock() + self._seconds
