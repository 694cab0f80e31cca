"""What an agent produces while it applies a batch, confirmed together before the agent saves its state
(`agents.state`).

The records go through the worker's own aiokafka producer (`Outlet`), not Faust's: per partition they
are appended to a record batch (`AIOKafkaProducer.create_batch`), which is sent when it is full and at
`ship` (before the sink write) or `confirm`. Appending costs about 7 µs a record where
`AIOKafkaProducer.send` costs about 30 (measured against Tansu; Faust's `topic.send` adds per-record
bookkeeping on top, about 250 µs). A record goes to
the partition its key would (Kafka's default partitioner), so `meter.readings` keeps each meter on one
partition as before, and the batches of one partition leave in order (aiokafka sends one at a time).
The topics are declared before the first record (`app.Outlets`), so nothing is produced to a missing
topic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from pipeline.brokers import Connection
from pipeline.kafka import KeyPartitions

BATCH_BYTES = 256 * 1024  # a record batch per partition is sent when it reaches this (aiokafka: 16 KiB)


class Underway:
    """The agents' table writes under way in this worker (`agents.changelog`: a checkpoint's entries and
    progress, a history), so that a rebalance waits until none is, once for all agents: the waits of
    one rebalance share one deadline."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._rebalance: object = None
        self._deadline = 0.0

    @contextmanager
    def span(self) -> Iterator[None]:
        self.count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.count -= 1
            if not self.count:
                self._idle.set()

    async def none(self, within: float, rebalance: object) -> bool:
        """Wait until no write is under way; False when one still is at the deadline: `within` seconds
        after the first wait of `rebalance` (any value that tells one rebalance from the next)."""
        now = time.monotonic()
        if rebalance != self._rebalance:
            self._rebalance, self._deadline = rebalance, now + within
        while self.count:  # (another write may have started since the last one ended)
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._idle.wait(), remaining)
            except TimeoutError:
                return False
        return True


class Outlet:
    """The worker's producer for agent outputs and table writes: started on first use, stopped with the
    app (a batch still running then fails: it is applied again from the last checkpoint at the next
    start)."""

    def __init__(self, kafka: Connection) -> None:
        self._kafka = kafka
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()
        self._stopped = False
        self._partitions = KeyPartitions()
        self.table_writes = Underway()

    async def producer(self) -> AIOKafkaProducer:
        if self._producer is not None and not self._stopped:  # (asked for every record: no lock once started)
            return self._producer
        async with self._starting:
            if self._stopped:
                raise KafkaError("the worker is stopping: no more outputs")
            if self._producer is None:
                producer = AIOKafkaProducer(**self._kafka, acks="all", max_batch_size=BATCH_BYTES)
                await producer.start()
                self._producer = producer
        return self._producer

    async def partition(self, topic: str, key: bytes | None) -> int:
        """The partition of `key` in `topic`, as Kafka's default partitioner gives it."""
        return await self._partitions.of(await self.producer(), topic, key)

    async def stop(self) -> None:
        async with self._starting:
            self._stopped = True
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None


class Outbox:
    def __init__(self, outlet: Outlet) -> None:
        self._outlet = outlet
        self._open: dict[tuple[str, int], Any] = {}  # (topic, partition) → its record batch being filled
        self._pending: list[Awaitable[Any]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes,
                   headers: Mapping[str, bytes] | None = None, *, partition: int | None = None) -> None:
        """Add the record to its partition's batch (in call order per partition): `partition`, else the one
        of `key`."""
        place = (topic, await self._outlet.partition(topic, key) if partition is None else partition)
        listed = list(headers.items()) if headers else []
        batch = self._open.get(place)
        if batch is None or batch.append(timestamp=None, key=key, value=value, headers=listed) is None:
            if batch is not None:  # full: on its way, the record starts the next one
                await self._ship(place, batch)
            batch = self._open[place] = (await self._outlet.producer()).create_batch()
            batch.append(timestamp=None, key=key, value=value, headers=listed)  # (an empty batch takes any)

    async def _ship(self, place: tuple[str, int], batch: Any) -> None:
        producer = await self._outlet.producer()
        self._pending.append(await producer.send_batch(batch, place[0], partition=place[1]))

    async def ship(self) -> None:
        """Send what is not sent yet (before the sink write, which may take long: a charger waits for
        `power.surplus`)."""
        batches, self._open = self._open, {}
        for place, batch in batches.items():
            await self._ship(place, batch)

    async def confirm(self) -> None:
        """Send what is not sent yet, and wait until Kafka has every record."""
        await self.ship()
        pending, self._pending = self._pending, []
        # every record's outcome awaited (none left unretrieved), then the first failure raised
        for outcome in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome
