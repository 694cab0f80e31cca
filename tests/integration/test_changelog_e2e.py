"""`agents.changelog` against a real Tansu: an agent table's writes land in the changelog partitions
they name, in order, as the raw records Faust itself writes, and Faust restores a table from them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from faust.types import Message

from pipeline.agents.changelog import Changelog, Write
from pipeline.agents.outbox import Outlet
from pipeline.kafka import ensure_topics
from wattstream.embedded.servers import Server


def table(app_id: str) -> Any:
    app = faust.App(app_id, broker="kafka://127.0.0.1:9", store="memory://", autodiscover=False)
    return app.Table("decode-x-state", key_type=bytes, value_type=bytes, partitions=4)


def test_writes_land_in_their_partitions_in_order_and_faust_restores_the_table_from_them(tansu: Server) -> None:
    kafka = {"bootstrap_servers": tansu.address}
    written = table("pin")
    topic = written.changelog_topic.get_topic_name()
    # entries of three keys written again and again (a key's partition is that of its input records), then
    # the progress, on two partitions; more than a record batch holds
    writes: list[Write] = [(i % 3 % 2, b"device-%d" % (i % 3), b"%d:" % i + b"s" * 3000) for i in range(200)]
    writes += [(0, b"\0progress/meter.raw.x/0", b"101"), (1, b"\0progress/meter.raw.x/1", b"100")]

    async def scenario() -> dict[int, list[Any]]:
        await ensure_topics(kafka, [topic], 4)
        outlet = Outlet(kafka)
        try:
            await Changelog(written, outlet).write(writes)
        finally:
            await outlet.stop()
        consumer = AIOKafkaConsumer(topic, **kafka, auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        found: dict[int, list[Any]] = {}
        try:
            deadline = time.monotonic() + 60
            while sum(map(len, found.values())) < len(writes) and time.monotonic() < deadline:
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    found.setdefault(tp.partition, []).extend(records)
        finally:
            await consumer.stop()
        return found

    found = asyncio.run(scenario())
    assert {p: [(r.key, r.value) for r in records] for p, records in found.items()} == {
        p: [(k, v) for q, k, v in writes if q == p] for p in (0, 1)}
    assert all(not r.headers for records in found.values() for r in records)
    last = {key: value for _, key, value in writes}
    assert dict(written.data) == last  # the table holds them once Kafka has them

    # a worker started afresh: Faust's restore, each record decoded by the table's changelog topic
    restored = table("pin")

    async def decoded() -> list[Any]:
        changelog = restored.changelog_topic
        return [await changelog.decode(Message(r.topic, r.partition, r.offset, r.timestamp / 1000,
                                               r.timestamp_type, r.headers, r.key, r.value, None))
                for _, records in sorted(found.items()) for r in records]

    restored.apply_changelog_batch(asyncio.run(decoded()))
    assert dict(restored.data) == last
