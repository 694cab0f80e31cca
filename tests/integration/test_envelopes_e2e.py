"""Envelopes through the real parts: the bridge's producer packs what queues up per raw partition
(`bridges.kafka.RawProducer`), and the worker takes every payload of an envelope as if it had come alone
— decoded, dead-lettered with its own key and headers, written once."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from bridges.kafka import RawProducer
from pipeline import envelope, topics
from tests.conftest import Stack
from tests.kafka import deadletters
from tests.mqtt import publish_all
from wattstream.embedded.servers import Server, start_tansu

RAW = topics.raw_topic("iammeter")
Records = dict[int, list[tuple[bytes, bytes, dict[str, bytes]]]]


async def raw_records(bootstrap: str, count: int, within: float = 60) -> Records:
    """Partition → its records (key, value, headers) in offset order, once `count` payloads arrived."""
    consumer = AIOKafkaConsumer(RAW, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    found: Records = defaultdict(list)
    payloads = 0
    try:
        deadline = time.monotonic() + within
        while payloads < count and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for r in records:
                    found[tp.partition].append((r.key, r.value, dict(r.headers)))
                    payloads += len(envelope.items(r.key, r.value, dict(r.headers)))
    finally:
        await consumer.stop()
    return found


def test_queued_payloads_go_as_envelopes_in_order_on_their_key_s_partition(tansu: Server) -> None:
    sent = [(f"dev{i % 50}", b"%d" % i) for i in range(2000)]

    async def send() -> None:
        producer = RawProducer({"bootstrap_servers": tansu.address}, partitions=4)
        await producer.start(["iammeter"])
        try:
            await asyncio.gather(*[await producer.send("iammeter", key, value, "test/origin") for key, value in sent])
            await (await producer.send("iammeter", "alone", b"last", "test/origin"))  # its partition is free
        finally:
            await producer.stop()

    asyncio.run(send())
    records = asyncio.run(raw_records(tansu.address, len(sent) + 1))
    partitioner, partitions = DefaultPartitioner(), [0, 1, 2, 3]
    by_key: dict[bytes, list[bytes]] = defaultdict(list)
    sizes = []
    for partition, found in records.items():
        for key, value, headers in found:
            items = envelope.items(key, value, headers)
            sizes.append(len(items))
            if len(items) > 1:
                assert key is None and headers == {topics.H_ENVELOPE: envelope.VERSION}
            for item in items:
                assert partitioner(item.key, partitions, partitions) == partition
                item_headers = dict(item.headers)
                assert item_headers[topics.H_DRIVER] == b"iammeter"
                assert item_headers[topics.H_ORIGIN] == b"test/origin"
                assert item_headers[topics.H_RECEIVED_AT].endswith(b"Z")
                by_key[item.key].append(item.value)
    expected: dict[bytes, list[bytes]] = defaultdict(list)
    for key, value in [*sent, ("alone", b"last")]:
        expected[key.encode()].append(value)
    assert by_key == expected  # each once, in the order sent
    assert max(sizes) > 1, sizes  # payloads queued behind a send in flight went together
    last = records[partitioner(b"alone", partitions, partitions)][-1]
    assert last[:2] == (b"alone", b"last") and topics.H_ENVELOPE not in last[2]  # alone: a plain record


def test_after_a_failed_send_no_later_payload_reaches_kafka_before_the_producer_starts_again(tmp_path: Path) -> None:
    """The MQTT bridge acknowledges a payload only once delivered; one that failed comes again from the
    broker after the bridge has rejoined. A later payload sent meanwhile would overtake it."""
    tansu = start_tansu(tmp_path / "tansu")
    servers = [tansu]

    async def scenario() -> None:
        producer = RawProducer({"bootstrap_servers": tansu.address}, 4, request_timeout_ms=2000)
        await producer.start(["iammeter"])
        try:
            await (await producer.send("iammeter", "dev", b"0", "o"))
            tansu.stop()
            with pytest.raises(KafkaError):
                await (await producer.send("iammeter", "dev", b"1", "o"))
            later = await producer.send("iammeter", "dev", b"2", "o")
            assert later.done() and isinstance(later.exception(), KafkaError)  # refused at once, not sent
            servers.append(start_tansu(tmp_path / "tansu2", port=tansu.port))
            await producer.stop()
            await producer.start(["iammeter"])
            await (await producer.send("iammeter", "dev", b"3", "o"))
        finally:
            await producer.stop()

    try:
        asyncio.run(scenario())
        records = asyncio.run(raw_records(servers[-1].address, 1))
        assert [v for found in records.values() for _, v, _ in found] == [b"3"]
    finally:
        for server in servers:
            server.stop()


def body(device: str, i: int) -> bytes:
    return b'{"SN":"%s","Data":[230,1,%d,100,0,50,1]}' % (device.encode(), i)


def test_the_worker_takes_each_payload_of_an_envelope(stack: Stack) -> None:
    worker, _ = stack.start_pipeline()
    devices = [f"ENV{n:05d}" for n in range(30)]
    messages: list[tuple[str, bytes | str]] = [(f"device/{d}/realtime", body(d, i)) for i in range(10) for d in devices]
    messages.insert(150, ("device/BADENV01/realtime", b'{"SN":"BADENV01","Data":[1,2]}'))
    publish_all(stack.mosquitto.port, messages)

    rows = stack.influx.wait_rows("SELECT power_w FROM readings GROUP BY meter", count=300)
    powers: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        powers[row["meter"]].append(row["power_w"])
    assert {meter: sorted(p) for meter, p in powers.items()} == {f"iammeter:{d}": list(range(10)) for d in devices}

    [(value, headers)] = asyncio.run(deadletters(stack.tansu.address, b"BADENV01"))
    assert value == b'{"SN":"BADENV01","Data":[1,2]}'
    assert headers[topics.H_ORIGIN] == b"device/BADENV01/realtime" and headers[topics.H_STAGE] == b"frame"
    records = asyncio.run(raw_records(stack.tansu.address, len(messages)))
    assert any(topics.H_ENVELOPE in headers for found in records.values() for _, _, headers in found), \
        "the burst went as plain records only: no envelope was tested"
    assert worker.proc.poll() is None
