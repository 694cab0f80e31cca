"""B-route: the dongle session (simulated RL7023 DSS and IPS on a pty) → `wattstream bridge broute` →
Tansu → worker → InfluxDB, with a dropped PANA session recovered; and the D3/E1 scaling surviving a
worker restart (changelogged table)."""

import asyncio
import os
import time
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer

from bridges.kafka import RawProducer
from pipeline.agents.state import Entry
from simulators.rl7023 import SimulatedRl7023
from tests.conftest import Stack


async def produce(bootstrap: str, frames: list[str]) -> None:
    producer = RawProducer({"bootstrap_servers": bootstrap}, partitions=4)
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
    changelog_topic = f"{stack.env['WATTSTREAM_WORKER_APP_ID']}-decode-broute-state-changelog"
    entries = [Entry.load(value) for key, value in asyncio.run(records(stack.tansu.address, changelog_topic))
               if key == b"JP01"]
    assert bytes.fromhex(entries[-1].state["decoder"]) == b'{"coefficient": 1, "unit": 1, "digits": null}'
    assert "left out until D3/E1" not in restarted.output()


@pytest.mark.parametrize("variant", ["dss", "ips"])
def test_dongle_session_polls_the_meter_and_recovers_a_dropped_session(stack: Stack, variant: str) -> None:
    device_end, port = os.openpty()
    port_path = os.ttyname(port)
    os.close(port)
    dongle = SimulatedRl7023(device_end, variant=variant, route_id="0123456789ABCDEF0123456789ABCDEF",  # type: ignore[arg-type]
                             password="SECRETPASS12").start()
    stack.env.update({
        "WATTSTREAM_BROUTE_ID": "0123456789ABCDEF0123456789ABCDEF", "WATTSTREAM_BROUTE_PASSWORD": "SECRETPASS12",
        "WATTSTREAM_BROUTE_VARIANT": variant, "WATTSTREAM_BROUTE_DEVICE": "JP02",
        "WATTSTREAM_BROUTE_POLLS": '[[["E7", "E8"], 1], [["E0", "E3"], 2], [["D3", "D7", "E1"], 3]]',
        "WATTSTREAM_BROUTE_SILENCE_TIMEOUT": "4",
    })
    worker = stack.start("worker", "worker")
    bridge = stack.start("broute", "bridge", "broute", "--port", port_path)
    try:
        bridge.wait_for("PANA session 1", timeout=60)
        worker.wait_for("Worker]: Ready")
        influx = stack.influx
        rows = influx.wait_rows("SELECT energy_import_wh FROM readings WHERE meter = 'broute:JP02' "
                                "AND energy_import_wh > 0", count=1)
        assert rows and rows[0]["energy_import_wh"] >= 12345600  # 123456+ counts x 0.1 kWh
        power = influx.wait_rows("SELECT power_w FROM readings WHERE meter = 'broute:JP02' AND phase = 'total' "
                                 "AND power_w > 0", count=2)
        assert all(200 < row["power_w"] < 1000 for row in power)

        dongle.drop()
        bridge.wait_for("PANA session 2", timeout=60)
        before = dongle.gets
        deadline = time.monotonic() + 20
        while dongle.gets <= before + 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert dongle.gets > before + 2  # polling again after the rejoin
        dongle.mute = True  # the dongle stops answering altogether
        bridge.wait_for("no frame from the meter for 4s", timeout=30)
        time.sleep(2)
        dongle.mute = False
        bridge.wait_for("PANA session 3", timeout=90)
        log = bridge.output()
        assert "session lost (EVENT 29)" in log
        assert "SECRETPASS12" not in log and "0123456789ABCDEF0123456789ABCDEF" not in log
    finally:
        dongle.stop()
        bridge.stop()
        os.close(device_end)
