"""Reading what the pipeline left in Kafka."""

import asyncio

from aiokafka import AIOKafkaConsumer

from pipeline import topics


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
