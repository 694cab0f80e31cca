"""The InfluxDB sink holds, never drops: influxd stopped in the middle of a stream while payloads keep
coming, started again → every reading in InfluxDB, and the worker never stopped (real Tansu, worker,
influxd 1.6 behind the v2-write forwarder)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline import topics
from tests.conftest import Influx, Stack
from tests.frames import iammeter_stream
from tests.influxdb import start_influxdb
from tests.kafka import deadletters, produce
from wattstream.embedded.servers import Server

TOTAL = "SELECT power_w FROM readings WHERE phase = 'total' GROUP BY meter"


@pytest.fixture
def own_influxd(tmp_path: Path) -> Iterator[list[Server]]:
    """An influxd for this test alone (it gets stopped); every instance started is stopped at the end."""
    servers = [start_influxdb(tmp_path / "influxd", "wattstream")]
    yield servers
    for server in reversed(servers):
        server.stop()


def test_influxdb_stopped_mid_stream_loses_and_duplicates_nothing(
        own_influxd: list[Server], tansu: Server, mosquitto: Server, tmp_path: Path) -> None:
    influxd = own_influxd[0]
    influx = Influx(influxd)  # writes go through this server's forwarder, which outlives influxd below
    stack = Stack(tansu, mosquitto, influx, tmp_path)
    records, headers = iammeter_stream(meters=5, seconds=300, start=datetime(2025, 6, 21, 9, tzinfo=UTC))
    thirds = [slice(0, 500), slice(500, 1000), slice(1000, 1500)]
    raw = topics.raw_topic("iammeter")
    try:
        worker = stack.start("worker", "worker")
        worker.wait_for("Worker]: Ready")
        asyncio.run(produce(tansu.address, raw, records[thirds[0]], headers[thirds[0]]))
        assert len(influx.wait_rows(TOTAL, count=500)) == 500

        influxd.proc.terminate()
        influxd.proc.wait(30)
        asyncio.run(produce(tansu.address, raw, records[thirds[1]], headers[thirds[1]]))
        worker.wait_for("sink influxdb unavailable, holding")
        asyncio.run(produce(tansu.address, raw, records[thirds[2]], headers[thirds[2]]))
        worker.wait_for("retry in 2.0s")  # the third failed attempt: down for a few seconds
        own_influxd.append(start_influxdb(tmp_path / "influxd", "wattstream", port=influxd.port))

        rows = influx.wait_rows(TOTAL, count=len(records), timeout=90)
        assert len(rows) == len(records)  # one point per meter and second
        assert {(row["meter"], row["time"]) for row in rows} == \
            {(f"iammeter:M{m:03d}", f"2025-06-21T09:{s // 60:02d}:{s % 60:02d}Z") for s in range(300) for m in range(5)}
        assert worker.proc.poll() is None  # held, did not crash
        assert not asyncio.run(deadletters(tansu.address, b"M000", within=3))
    finally:
        stack.stop()
