"""Raw payloads decoded exactly once across a worker stopped while its decode agent is busy (real
Tansu, worker and InfluxDB): every payload gives its reading once; a reading on `meter.readings`
repeats only as the same record from the same position (sent again because the stop came between
sending and saving), which the readings agent skips (tests/faults.py kills workers instead)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from pipeline import topics
from pipeline.models import Reading
from tests.conftest import Stack
from tests.frames import iammeter_stream
from tests.kafka import consume_records, produce


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
    sent: dict[tuple[str, datetime], set[tuple[bytes, bytes]]] = {}
    for _, value, headers in asyncio.run(consume_records(bootstrap, topics.READINGS, len(records))):
        reading = Reading.from_json(value)
        sent.setdefault((reading.meter_id, reading.ts), set()).add((value, headers[topics.H_POSITION]))
    assert len(sent) == len(records)
    assert [copies for copies in sent.values() if len(copies) > 1] == []  # repeats: the same record, same position
