"""Raw payloads decoded exactly once across a worker stopped while its decode agent is busy (real
Tansu, worker and InfluxDB): every payload gives its reading on `meter.readings` once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

from pipeline import topics
from pipeline.models import Reading
from tests.conftest import Stack
from tests.frames import vectors
from tests.kafka import consume, produce

PAYLOAD = str(vectors("iammeter")["iammeter-doc-three-phase-nem"]["input"]).encode()  # SN from the key
T0 = datetime(2025, 6, 21, 9, tzinfo=UTC)
METERS, SECONDS = 10, 600


def test_every_raw_payload_is_decoded_once_across_a_restart(stack: Stack) -> None:
    records, headers = [], []
    for second in range(SECONDS):
        for meter in range(METERS):
            records.append((f"M{meter:03d}".encode(), PAYLOAD))
            headers.append([(topics.H_RECEIVED_AT, (T0 + timedelta(seconds=second)).isoformat().encode())])
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
