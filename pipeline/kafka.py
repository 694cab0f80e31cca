"""What every Kafka client of wattstream needs, the worker's and the bridges' alike: topics created
when missing (`ensure_topics`), a partition's true end (`end_offsets`), a consumer started safely
(`start`) and the partition a key goes to (`KeyPartitions`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner

from pipeline.brokers import Connection
from pipeline.retry import Backoff

log = logging.getLogger(__name__)


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


async def ensure_topics_when_reachable(kafka: Connection, names: Iterable[str], partitions: int) -> None:
    """`ensure_topics`, trying again every 2 s until Kafka answers (steady: it is expected any moment)."""
    backoff = Backoff(2.0, 2.0)
    while True:
        try:
            await ensure_topics(kafka, names, partitions)
            return
        except KafkaError as exc:
            log.warning("waiting for Kafka at %s (%s); retrying", kafka["bootstrap_servers"], exc)
            await asyncio.sleep(backoff.next())


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


class KeyPartitions:
    """The partition Kafka's default partitioner gives a key (murmur2 over the topic's partitions), cached
    per (topic, key): in Python it costs more than the rest of a send, and the keys are few (devices,
    meters, sites). `clear()` after a reconnect (the partition counts are read again)."""

    def __init__(self) -> None:
        self._partitioner = DefaultPartitioner()
        self._known: dict[tuple[str, bytes | None], int] = {}

    async def of(self, producer: AIOKafkaProducer, topic: str, key: bytes | None) -> int:
        partition = self._known.get((topic, key))
        if partition is None:
            partitions = sorted(await producer.partitions_for(topic))
            partition = self._partitioner(key, partitions, partitions)
            if len(self._known) >= 100_000:
                self._known.clear()
            self._known[(topic, key)] = partition
        return partition

    def clear(self) -> None:
        self._known.clear()
