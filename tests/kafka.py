"""Reading what the pipeline left in Kafka."""

import asyncio
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipeline import envelope, topics


async def deadletters(bootstrap: str, key: bytes, within: float = 30) -> list[tuple[bytes, dict[str, bytes]]]:
    consumer = AIOKafkaConsumer(topics.DEADLETTER, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    found: list[tuple[bytes, dict[str, bytes]]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not found and loop.time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [(r.value, dict(r.headers)) for r in records if r.key == key]
    finally:
        await consumer.stop()
    return found


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]],
                  headers: list[list[tuple[str, bytes]]] | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for (key, value), record_headers in zip(records, headers or [[] for _ in records], strict=True):
            await producer.send(topic, value=value, key=key, headers=record_headers)
        await producer.flush()
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, count: int, within: float = 60,
                  idle: float = 2.0) -> list[tuple[bytes, bytes]]:
    """Everything on `topic` from the start: until `count` records arrived and `idle` seconds passed
    without more (so extra, unwanted records are seen too), or `within` seconds."""
    return [(key, value) for key, value, _ in await consume_records(bootstrap, topic, count, within, idle)]


async def consume_records(bootstrap: str, topic: str, count: int, within: float = 60, idle: float = 2.0,
                          keep: Callable[[dict[str, bytes]], bool] = lambda _: True,
                          ) -> list[tuple[bytes, bytes, dict[str, bytes]]]:
    """`consume` with each record's headers; only the records whose headers `keep` takes."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    found: list[tuple[bytes, bytes, dict[str, bytes]]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline, quiet_since = loop.time() + within, loop.time()
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            if any(batch.values()):
                quiet_since = loop.time()
            for records in batch.values():
                found += [(r.key, r.value, dict(r.headers)) for r in records if keep(dict(r.headers))]
            if len(found) >= count and loop.time() - quiet_since >= idle:
                break
    finally:
        await consumer.stop()
    return found


async def raw_values(bootstrap: str, want: int, within: float = 60, distinct: bool = False) -> list[bytes]:
    """The payloads on the raw topic (of envelopes too), once `want` arrived (`distinct`: `want` different
    ones, copies sent again not counted)."""
    consumer = AIOKafkaConsumer(topics.raw_topic("iammeter"), bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + within
        while len(set(values) if distinct else values) < want and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values += [item.value for r in records for item in envelope.items(r.key, r.value, dict(r.headers))]
    finally:
        await consumer.stop()
    return values
