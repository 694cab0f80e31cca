"""What an agent produces while it applies a batch, confirmed together before the agent saves its state
(`agents.state`).

The records go through the worker's own aiokafka producer (`Outlet`), not Faust's: per partition they
are appended to a record batch (`AIOKafkaProducer.create_batch`), which is sent when it is full and at
`confirm`. Appending costs about 7 µs a record where `AIOKafkaProducer.send` costs about 30 (measured
against Tansu; Faust's `topic.send` adds per-record bookkeeping on top, about 250 µs). A record goes to
the partition its key would (Kafka's default partitioner), so `meter.readings` keeps each meter on one
partition as before. The topics are declared before the first record (`app.Outlets`), so nothing is
produced to a missing topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from pipeline.brokers import Connection

BATCH_BYTES = 256 * 1024  # a record batch per partition is sent when it reaches this (aiokafka: 16 KiB)


class Outlet:
    """The worker's producer for agent outputs: started on first use, stopped with the app."""

    def __init__(self, kafka: Connection) -> None:
        self._kafka = kafka
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()
        self._partitioner = DefaultPartitioner()
        self._places: dict[tuple[str, bytes | None], int] = {}  # (topic, key) → partition

    async def producer(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(**self._kafka, acks="all", max_batch_size=BATCH_BYTES)
                await producer.start()
                self._producer = producer
        return self._producer

    async def partition(self, topic: str, key: bytes | None) -> int:
        """The partition of `key` in `topic` (cached: murmur2 in Python costs more than the append)."""
        place = self._places.get((topic, key))
        if place is None:
            producer = await self.producer()
            partitions = sorted(await producer.partitions_for(topic))
            place = self._partitioner(key, partitions, partitions)
            if len(self._places) >= 100_000:
                self._places.clear()
            self._places[(topic, key)] = place
        return place

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


class Outbox:
    def __init__(self, outlet: Outlet) -> None:
        self._outlet = outlet
        self._open: dict[tuple[str, int], Any] = {}  # (topic, partition) → its record batch being filled
        self._pending: list[Awaitable[Any]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes,
                   headers: Mapping[str, bytes] | None = None) -> None:
        """Add the record to its partition's batch (in call order per partition)."""
        place = (topic, await self._outlet.partition(topic, key))
        record = {"timestamp": None, "key": key, "value": value, "headers": list(headers.items()) if headers else []}
        batch = self._open.get(place)
        if batch is None or batch.append(**record) is None:
            if batch is not None:  # full: on its way, the record starts the next one
                await self._ship(place, batch)
            batch = self._open[place] = (await self._outlet.producer()).create_batch()
            if batch.append(**record) is None:
                raise ValueError(f"a record of {len(value)} bytes does not fit in a batch of {topic}")

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
        await asyncio.gather(*pending)
