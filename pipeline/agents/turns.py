"""Taking turns on the worker's event loop.

Every agent of a worker runs on one event loop, and so do the producer's sends and the hand-over of
fetched records. A decode agent's part of a batch is pure CPU between its awaits (which seldom wait:
appending to a record batch does not), so a part of a thousand payloads held the loop for a quarter of
a second while the surplus agent, with a grid reading a charger waits for, could not run. An agent
therefore hands the loop on every `SLICE_SECONDS` of its work (docs/performance.md has the figures).
"""

from __future__ import annotations

import asyncio
import time

SLICE_SECONDS = 0.005


class Turns:
    """`await turns.share()` between two pieces of work: the loop runs what else is ready once the
    agent has worked `SLICE_SECONDS` since it last did."""

    def __init__(self, seconds: float = SLICE_SECONDS) -> None:
        self._seconds = seconds
        self._until = time.perf_counter() + seconds

    async def share(self) -> None:
        if time.perf_counter() >= self._until:
            await asyncio.sleep(0)
            self._until = time.perf_counter() + self._seconds
