"""The one back-off of wattstream: waits that double from `first` up to `ceiling` seconds, back to
`first` after a success. Used wherever something is tried again until it works: a sink that is down, a
Kafka that does not answer, a serial port or a B-route session that was lost. And `first_of`, the wait
that a stop cuts short (a try that hangs, or the back-off between two)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


class Backoff:
    def __init__(self, first: float = 1.0, ceiling: float = 30.0) -> None:
        self.first = first
        self.ceiling = ceiling
        self._next = first

    def next(self) -> float:
        """The wait to take now; the one after it is twice as long, at most `ceiling`."""
        wait = self._next
        self._next = min(wait * 2, self.ceiling)
        return wait

    def reset(self) -> None:
        self._next = self.first


async def first_of(*waits: Awaitable[object], within: float | None = None) -> None:
    """Until the first of `waits` is done, at most `within` seconds; the others are cancelled (a stop
    beside what a command waits for)."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    await asyncio.wait(tasks, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
