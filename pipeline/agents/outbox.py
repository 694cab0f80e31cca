"""What an agent produces while it applies a batch, sent straight through the app's producer and
confirmed together before the agent saves its state (`agents.state`).

`app.producer.send` is Faust's public producer interface: it hands the record to aiokafka (partition by
key, as `topic.send` does) and returns the delivery future. `topic.send(..., force=True)` does the
same plus per-record bookkeeping (a `FutureMessage`, callbacks, sensors) that cost about 250 µs per
record, more than everything else an agent does with a reading. The topics are
declared before the first record (`app.Outlets`), so nothing is produced to a missing topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any

import faust


class Outbox:
    def __init__(self, app: faust.App) -> None:
        self._producer = app.producer
        self._pending: list[Awaitable[Any]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes,
                   headers: Mapping[str, bytes] | None = None) -> None:
        """Hand the record to the producer now (in call order per partition)."""
        self._pending.append(await self._producer.send(topic, key, value, None, None,
                                                       list(headers.items()) if headers else None))

    async def confirm(self) -> None:
        """Until Kafka has every record sent so far."""
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)
