"""Sinks behind one small protocol (STYLE 7): `async write(batch)`; the agent batches and retries.

A sink raises `SinkUnavailable` for a transient failure (the agent backs off and retries while holding
the stream: Kafka keeps the data) and `SinkRejected` when the target refuses the data for good (the
agent isolates the offending readings and dead-letters them). Writes are idempotent: the same reading
always becomes the same point/line, so a replay after a crash creates no duplicates in InfluxDB.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pipeline.models import Reading


class SinkUnavailable(Exception):
    """Transient: the target is down, slow or overloaded. Retry later."""


class SinkRejected(Exception):
    """Permanent: the target refuses this data (e.g. a field type conflict)."""


class Sink(Protocol):
    name: str

    async def write(self, batch: Sequence[Reading]) -> None: ...

    async def close(self) -> None: ...
