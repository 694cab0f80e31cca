"""Reading topics outside Faust: following a topic from its end, as `wattstream charger` and `wattstream
publish` do (what is published from the start on, never stale values), and reading partitions from given
offsets to their ends (the embedded run's snapshot, `bench --latency`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from pipeline.brokers import Connection
from pipeline.kafka import end_offsets, ensure_topics_when_reachable, start

log = logging.getLogger(__name__)
T = TypeVar("T")


async def follow(kafka: Connection, topic: str, partitions: int, fetch_wait_ms: int) -> AIOKafkaConsumer:
    """A consumer assigned every partition of `topic` (created if nothing was produced yet), at its end:
    what is published from here on, never stale values; each fetch waits at most `fetch_wait_ms`
    (`WorkerSettings.fetch_wait_ms`). Waits for Kafka."""
    await ensure_topics_when_reachable(kafka, [topic], partitions)
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


async def read_to_end(consumer: AIOKafkaConsumer, kafka: Connection, starts: dict[TopicPartition, int],
                      stall_seconds: float) -> AsyncIterator[tuple[TopicPartition, ConsumerRecord[bytes, bytes]]]:
    """Every record of each partition from its start offset to its end (as a fetch states it:
    `pipeline.kafka.end_offsets`), through `consumer` (started, its assignment replaced); `TimeoutError`
    when Kafka hands out nothing for `stall_seconds`."""
    ends = await end_offsets(kafka, list(starts)) if starts else {}
    wanted = {tp: end for tp, end in ends.items() if end > starts[tp]}
    consumer.assign(list(wanted))
    for tp in wanted:
        consumer.seek(tp, starts[tp])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + stall_seconds
    while wanted:
        if loop.time() > deadline:
            raise TimeoutError(f"Kafka handed out nothing of {sorted(map(str, wanted))} for {stall_seconds} s")
        for tp, records in (await consumer.getmany(*wanted, timeout_ms=1000)).items():
            deadline = loop.time() + stall_seconds
            for record in records:
                if record.offset < wanted[tp]:
                    yield tp, record
        for tp in [tp for tp, end in wanted.items() if await consumer.position(tp) >= end]:
            del wanted[tp]
            consumer.pause(tp)
