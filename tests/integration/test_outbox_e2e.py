"""The agents' outputs through the worker's own producer (`agents.outbox`) against a real Tansu: more
than a record batch holds, each record on its key's partition, in the order sent, once."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from pipeline import topics
from pipeline.agents.outbox import BATCH_BYTES, Outbox, Outlet
from pipeline.kafka import ensure_topics
from wattstream.embedded.servers import Server

TOPIC = topics.READINGS


def test_outputs_fill_record_batches_and_arrive_in_order_on_their_key_s_partition(tansu: Server) -> None:
    sent = [(f"iammeter:K{i % 7}".encode(), b"%06d" % i + b"x" * 400) for i in range(4000)]
    assert sum(len(v) for _, v in sent) > 4 * BATCH_BYTES  # more than one batch per partition

    async def produce() -> None:
        await ensure_topics({"bootstrap_servers": tansu.address}, [TOPIC], 4)
        outlet = Outlet({"bootstrap_servers": tansu.address})
        out = Outbox(outlet)
        for key, value in sent:
            await out.send(TOPIC, key, value, {"position": b"t/0/1/2"})
        await out.confirm()
        await outlet.stop()
        with pytest.raises(KafkaError, match="stopping"):  # a batch still running then fails, none leaks
            await outlet.producer()

    async def consume() -> dict[int, list[tuple[bytes, bytes, dict[str, bytes]]]]:
        consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=tansu.address, auto_offset_reset="earliest",
                                    enable_auto_commit=False)
        await consumer.start()
        found: dict[int, list[tuple[bytes, bytes, dict[str, bytes]]]] = defaultdict(list)
        try:
            deadline = time.monotonic() + 60
            while sum(map(len, found.values())) < len(sent) and time.monotonic() < deadline:
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    found[tp.partition] += [(r.key, r.value, dict(r.headers)) for r in records]
        finally:
            await consumer.stop()
        return found

    asyncio.run(produce())
    found = asyncio.run(consume())
    partitioner, partitions = DefaultPartitioner(), [0, 1, 2, 3]
    by_key: dict[bytes, list[bytes]] = defaultdict(list)
    for partition, records in found.items():
        for key, value, headers in records:
            assert partitioner(key, partitions, partitions) == partition and headers == {"position": b"t/0/1/2"}
            by_key[key].append(value)
    expected: dict[bytes, list[bytes]] = defaultdict(list)
    for key, value in sent:
        expected[key].append(value)
    assert by_key == expected

