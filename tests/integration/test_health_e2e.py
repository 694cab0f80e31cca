"""Pipeline health through the real parts: the worker's Prometheus `/metrics` and the InfluxDB
measurement `pipeline` count exactly what went through (payloads, readings, a dead letter, sink writes)
and the consumer lag drains to zero."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from pipeline import topics
from tests.conftest import Stack
from tests.frames import iammeter_stream
from tests.kafka import produce


def scrape(port: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_and_pipeline_points_count_what_went_through(stack: Stack) -> None:
    records, headers = iammeter_stream(meters=2, seconds=10, start=datetime(2025, 6, 21, 9, tzinfo=UTC))
    records.append((b"M999", b"not an IAMMETER payload"))
    headers.append([])
    worker = stack.start("worker", "worker")
    worker.wait_for("Worker]: Ready")
    asyncio.run(produce(stack.tansu.address, topics.raw_topic("iammeter"), records, headers))
    stack.influx.wait_rows("SELECT power_w FROM readings WHERE phase = 'total'", count=20)

    port = stack.env["WATTSTREAM_WORKER_METRICS_PORT"]
    deadline = time.monotonic() + 30
    while True:  # the lag gauge is updated every second
        metrics = scrape(port)
        lag = [v for (name, labels), v in metrics.items()
               if name == "wattstream_consumer_lag" and ("agent", "decode-iammeter") in labels]
        if (lag and not any(lag)) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert lag and not any(lag), lag
    assert metrics["wattstream_readings_total", (("driver", "iammeter"),)] == 20
    assert metrics["wattstream_records_total", (("agent", "decode-iammeter"),)] == 21
    dead = {labels: v for (name, labels), v in metrics.items() if name == "wattstream_deadletters_total"}
    assert dead == {(("reason", "malformed"), ("source", topics.raw_topic("iammeter")), ("stage", "frame")): 1}
    assert metrics["wattstream_sink_write_seconds_count", (("sink", "influxdb"),)] >= 1
    assert metrics["wattstream_sink_failures_total", (("sink", "influxdb"),)] == 0

    rows = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = stack.influx.query("SELECT last(readings_total) FROM pipeline WHERE driver = 'iammeter'")
        if rows and rows[0]["last"] == 20:
            break
        time.sleep(0.5)
    assert rows and rows[0]["last"] == 20, rows
    stages = stack.influx.query('SELECT last(deadletters_total) FROM pipeline GROUP BY "stage"')
    assert [row["last"] for row in stages] == [1]
