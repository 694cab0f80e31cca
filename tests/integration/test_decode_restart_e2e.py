"""Raw payloads decoded exactly once across a worker stopped while its decode agent is busy (real
Tansu, worker and InfluxDB): every payload gives its reading on `meter.readings` once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

from pipeline import topics
from pipeline.models import Reading
from tests.conftest import Stack
from tests.frames import iammeter_stream
from tests.kafka import consume, produce


def test_every_raw_payload_is_decoded_once_across_a_restart(stack: Stack) -> None:
    records, headers = iammeter_stream(meters=10, seconds=600, start=datetime(2025, 6, 21, 9, tzinfo=UTC))
    bootstrap, influx = stack.tansu.address, stack.influx

    worker = stack.start("worker", "worker")
    worker.wait_for("Worker]: Ready")
    asyncio.run(produce(bootstrap, topics.raw_topic("iammeter"), records, headers))
    influx.wait_rows("SELECT power_w FROM readings WHERE phase = 'total'", count=len(records) // 10)
    assert worker.stop() == 0  # mid-stream: the decode agent has most of the payloads still to do
    worker = stack.start("worker-again", "worker")

    rows = influx.wait_rows("SELECT power_w FROM readings WHERE phase = 'total' GROUP BY meter", count=len(records),
                           timeout=120)
    assert len(rows) == len(records)  # one point per meter and second: none lost
    decoded = [Reading.from_json(v) for _, v in asyncio.run(consume(bootstrap, topics.READINGS, len(records)))]
    seen = Counter((r.meter_id, r.ts) for r in decoded)
    assert len(seen) == len(records) and max(seen.values()) == 1  # and none decoded twice
