"""Producing raw records: the exact bytes received, keyed by device id (else the origin), with the
headers of DESIGN §2 (`driver`, `origin`, `received_at`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline import topics
from pipeline.brokers import Connection
from pipeline.models import format_ts

log = logging.getLogger(__name__)
T = TypeVar("T")


def raw_headers(driver: str, origin: str, received_at: datetime) -> list[tuple[str, bytes]]:
    return [
        (topics.H_DRIVER, driver.encode()),
        (topics.H_ORIGIN, origin.encode()),
        (topics.H_RECEIVED_AT, format_ts(received_at).encode()),
    ]


async def ensure_topics(kafka: Connection, names: Iterable[str], partitions: int) -> None:
    """Create the topics that do not exist yet (partitions decide how far workers scale out)."""
    admin = AIOKafkaAdminClient(**kafka)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(n, partitions, 1) for n in names if n not in existing]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:  # another bridge or worker was quicker
                pass
    finally:
        await admin.close()


async def end_offsets(kafka: Connection, partitions: list[TopicPartition],
                      within: float = 10.0) -> dict[TopicPartition, int]:
    """Each partition's end (the offset the next record will get), as a fetch response states it.

    `AIOKafkaConsumer.end_offsets` asks ListOffsets, and Tansu 0.6.0 answers that with the first offset
    of the partition's last produce batch + 1, not its end (measured: 10 records in one batch → 1).
    Faust stops restoring a table there and a consumer that seeks to it reads old records. The high
    watermark of a fetch is right, so this fetches from just below the reported end. On Apache Kafka
    both agree."""
    consumer = AIOKafkaConsumer(**kafka, enable_auto_commit=False, request_timeout_ms=10_000)
    await start(consumer)
    try:
        reported = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, max(reported[tp] - 1, 0))
        deadline = asyncio.get_running_loop().time() + within
        while (waiting := [tp for tp in partitions if consumer.highwater(tp) is None]) and \
                asyncio.get_running_loop().time() < deadline:
            await consumer.getmany(*waiting, timeout_ms=500)
        return {tp: max(reported[tp], consumer.highwater(tp) or 0) for tp in partitions}
    finally:
        await consumer.stop()


async def start(consumer: AIOKafkaConsumer) -> None:
    """`consumer.start()` and one turn of the loop for the tasks it created: aiokafka raises CancelledError
    from the `stop()` of a consumer without a group when its coordinator's task has not run yet (an error
    right after the start). That would replace the real error, or cancel whoever waits — Faust's table
    recovery, which then never ends."""
    await consumer.start()
    await asyncio.sleep(0)


async def follow(kafka: Connection, topic: str, partitions: int, fetch_wait_ms: int) -> AIOKafkaConsumer:
    """A consumer assigned every partition of `topic` (created if nothing was produced yet), at its end:
    what is published from here on, never stale values; each fetch waits at most `fetch_wait_ms`
    (`WorkerSettings.fetch_wait_ms`). Waits for Kafka."""
    while True:
        try:
            await ensure_topics(kafka, [topic], partitions)
            break
        except KafkaError as exc:
            log.warning("Kafka at %s not reachable (%s); retrying", kafka["bootstrap_servers"], exc)
            await asyncio.sleep(2)
    consumer = AIOKafkaConsumer(**kafka, enable_auto_commit=False, fetch_max_wait_ms=fetch_wait_ms)
    await start(consumer)
    await consumer.topics()  # fresh metadata, with the topic
    assigned = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(assigned)
    for tp, end in (await end_offsets(kafka, assigned)).items():
        consumer.seek(tp, end)
    return consumer


async def following(consumer: AIOKafkaConsumer, stop: asyncio.Event,
                    parse: Callable[[bytes], T]) -> AsyncIterator[T]:
    """The records of a `follow` consumer, parsed, until `stop` is set; then the consumer is stopped.
    A record `parse` refuses (ValueError) is logged and skipped."""
    try:
        while not stop.is_set():
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    try:
                        yield parse(record.value)
                    except ValueError as exc:
                        log.warning("%s[%d] offset %d not understood: %s", record.topic, record.partition,
                                    record.offset, exc)
    finally:
        await consumer.stop()


class RawProducer:
    """An aiokafka producer for raw records; `send` returns the delivery future."""

    def __init__(self, kafka: Connection, partitions: int, request_timeout_ms: int = 15_000) -> None:
        self._kafka = kafka
        self._partitions = partitions
        self._request_timeout_ms = request_timeout_ms  # how long a record may wait for Kafka before we give up
        self._producer: AIOKafkaProducer | None = None

    async def start(self, drivers: Iterable[str], retry_max: float = 30.0) -> None:
        """Connect (retrying with back-off until Kafka answers) and make sure the raw topics exist."""
        delay = 1.0
        while True:
            try:
                await ensure_topics(self._kafka, [topics.raw_topic(d) for d in drivers], self._partitions)
                producer = AIOKafkaProducer(**self._kafka, acks="all", linger_ms=5,
                                            request_timeout_ms=self._request_timeout_ms)
                await producer.start()
                self._producer = producer
                return
            except (KafkaError, OSError) as exc:
                log.warning("Kafka at %s not reachable (%s), retry in %.0fs", self._kafka["bootstrap_servers"], exc,
                            delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, retry_max)

    async def send(self, driver: str, key: str, value: bytes, origin: str,
                   received_at: datetime | None = None) -> asyncio.Future[object]:
        assert self._producer is not None, "RawProducer.start() first"
        return await self._producer.send(  # type: ignore[no-any-return]
            topics.raw_topic(driver), value=value, key=key.encode(),
            headers=raw_headers(driver, origin, received_at or datetime.now(UTC)),
        )

    async def deliver(self, driver: str, key: str, value: bytes, origin: str, stop: asyncio.Event,
                      received_at: datetime | None = None) -> bool:
        """Send and wait until Kafka has the record, retrying with back-off (for sources that cannot be
        asked to send again, like a serial port). False only when `stop` was set first."""
        delay = 1.0
        received_at = received_at or datetime.now(UTC)
        while not stop.is_set():
            try:
                await (await self.send(driver, key, value, origin, received_at))
                return True
            except KafkaError as exc:
                log.warning("Kafka did not take a %s record from %s (%r), retry in %.0fs", driver, origin, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        return False

    async def flush(self) -> None:
        if self._producer is not None:
            await self._producer.flush()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
