"""The one back-off of wattstream: waits that double from `first` up to `ceiling` seconds, back to
`first` after a success. Used wherever something is tried again until it works: a sink that is down, a
Kafka that does not answer, a serial port or a B-route session that was lost."""

from __future__ import annotations


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
