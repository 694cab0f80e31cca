"""The embedded run's rotation (`embedded.snapshot`) through the real parts: an hour of the recorded cloudy
day, the worker stopped in the middle of a window and a debounce bucket, records produced that it has
not applied, a snapshot of that Kafka, a new empty Kafka on the same address with the snapshot produced
into it, the rest of the hour there — and every window, debounce bucket and surplus decision exactly as
in one run without the change (the offline backtest)."""

from __future__ import annotations

import asyncio
import statistics
from datetime import datetime, timedelta
from pathlib import Path

from pipeline import topics
from pipeline.backtest import Backtest
from pipeline.brokers import KafkaSettings
from pipeline.meters_file import MetersFile
from pipeline.models import Reading, SurplusSignal
from tests.conftest import Stack
from tests.integration.test_windows_e2e import window_start
from tests.kafka import produce
from tests.profiles import METERS, hour_of
from wattstream.embedded import snapshot
from wattstream.embedded.servers import start_tansu


def test_windows_and_surplus_go_on_exactly_in_a_new_kafka_from_a_snapshot(stack: Stack, tmp_path: Path) -> None:
    meters = tmp_path / "meters.toml"
    meters.write_text(METERS)
    stack.env["WATTSTREAM_METERS_FILE"] = str(meters)
    readings = hour_of("clouds", 9)
    cut = next(i for i, r in enumerate(readings) if r.ts >= r.ts.replace(minute=27, second=35))
    unapplied = cut + 40  # produced after the worker stopped: carried in the snapshot
    records = [(r.meter_id.encode(), r.to_json()) for r in readings]
    raw, influx = topics.raw_topic("reading"), stack.influx

    worker = stack.start("worker", "worker")
    worker.wait_for("Worker]: Ready")
    asyncio.run(produce(stack.tansu.address, raw, records[:cut]))
    influx.wait_rows("SELECT power_w FROM readings", count=cut)
    assert worker.stop() == 0
    asyncio.run(produce(stack.tansu.address, raw, records[cut:unapplied]))
    kafka = KafkaSettings(bootstrap=stack.tansu.address).connection()
    path = tmp_path / "kafka-snapshot.jsonl"
    asyncio.run(snapshot.take(kafka, stack.env["WATTSTREAM_WORKER_APP_ID"], path))
    port = stack.tansu.port
    stack.tansu.stop()
    stack.tansu = start_tansu(tmp_path / "tansu-new", port=port)
    try:
        asyncio.run(snapshot.restore(kafka, path))
        assert not path.exists()  # a later start must not take it again
        worker = stack.start("worker-new-kafka", "worker")
        worker.wait_for("Worker]: Ready")
        asyncio.run(produce(stack.tansu.address, raw, records[unapplied:]))
        check_outputs(stack, readings, meters)
    finally:
        stack.stop()
        stack.tansu.stop()


def check_outputs(stack: Stack, readings: list[Reading], meters: Path) -> None:
    """InfluxDB against the readings: a window or bucket the change cut in two would be there with other
    statistics (its point written again) or twice (another reading's time)."""
    influx = stack.influx
    assert len(influx.wait_rows("SELECT power_w FROM readings", count=len(readings))) == len(readings)
    by_window: dict[tuple[str, datetime], list[float]] = {}
    for r in readings:
        by_window.setdefault((r.meter_id, window_start(r.ts, 10)), []).append(r.total.power_w)
    closed = {k: v for k, v in by_window.items() if k[1] + timedelta(minutes=11) <= readings[-1].ts}
    rows = influx.wait_rows("SELECT power_w_mean, power_w_count, power_w_min, power_w_max FROM averages_10m "
                            "WHERE phase = 'total' GROUP BY meter", count=len(closed))
    assert {(row["meter"], at(row["time"])): (row["power_w_count"], row["power_w_mean"], row["power_w_min"],
                                               row["power_w_max"]) for row in rows} == \
        {k: (len(v), statistics.mean(v), min(v), max(v)) for k, v in closed.items()}

    firsts: dict[tuple[str, datetime], Reading] = {}
    for r in readings:
        firsts.setdefault((r.meter_id, window_start(r.ts, 5)), r)
    rows = influx.wait_rows("SELECT power_w FROM readings_5m WHERE phase = 'total' GROUP BY meter", count=len(firsts))
    assert sorted((row["meter"], at(row["time"])) for row in rows) == sorted((m, r.ts) for (m, _), r in firsts.items())

    expected = [s for s in Backtest(MetersFile.load(meters)).run(readings, "surplus") if isinstance(s, SurplusSignal)]
    surplus = influx.wait_rows("SELECT surplus_w, charging, reason FROM surplus", count=len(expected))
    assert [(at(row["time"]), row["reason"]) for row in surplus] == [(s.ts, s.reason) for s in expected]


def at(time: str) -> datetime:
    return datetime.fromisoformat(time.replace("Z", "+00:00"))
