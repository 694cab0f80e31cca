"""B-route frames through Tansu → worker → InfluxDB; the D3/E1 scaling survives a worker restart
(changelogged table). Frames are produced to `meter.raw.broute` as the serial bridge will."""

import asyncio
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer

from bridges.kafka import RawProducer
from tests.conftest import Stack


async def produce(bootstrap: str, frames: list[str]) -> None:
    producer = RawProducer(bootstrap, partitions=4)
    await producer.start(["broute"])
    try:
        for frame in frames:
            await (await producer.send("broute", "JP01", bytes.fromhex(frame), "/dev/ttyUSB0", datetime.now(UTC)))
    finally:
        await producer.stop()


async def records(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=3000)
        return [(r.key, r.value) for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()


def test_scaling_state_survives_a_worker_restart(stack: Stack) -> None:
    worker = stack.start("worker", "worker")
    worker.wait_for("Worker]: Ready")
    asyncio.run(produce(stack.tansu.address, [
        "1081232802880105FF017201D30400000001",  # D3 = 1
        "1081000102880105FF017201E10101",  # E1 = 0.1 kWh
        "1081000102880105FF017201E704000004A5",  # E7 = 1189 W
    ]))
    influx = stack.influx
    assert [r["power_w"] for r in influx.wait_rows("SELECT power_w FROM readings", count=1)] == [1189]
    assert worker.stop() == 0

    restarted = stack.start("worker2", "worker")
    restarted.wait_for("Worker]: Ready")
    asyncio.run(produce(stack.tansu.address, ["1081000102880105FF017202E00400000064E304000001F4"]))
    rows = influx.wait_rows("SELECT energy_import_wh, energy_export_wh FROM readings WHERE "
                            "energy_import_wh > 0", count=1)
    assert [(r["energy_import_wh"], r["energy_export_wh"]) for r in rows] == [(10000, 50000)]
    # the state came from the table's changelog, not from re-reading D3/E1: the first worker committed them
    changelog_topic = f"{stack.env['WATTSTREAM_WORKER_APP_ID']}-broute-scaling-changelog"
    changelog = asyncio.run(records(stack.tansu.address, changelog_topic))
    assert changelog[-1] == (b"JP01", b'{"coefficient": 1, "unit": 1, "digits": null}')
    assert "left out until D3/E1" not in restarted.output()
