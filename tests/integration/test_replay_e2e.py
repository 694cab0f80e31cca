"""`wattstream replay` through the real parts: the worker's outputs of an hour of the recorded cloudy
day, fed in as readings on `meter.raw.reading` (readings, debounced readings, averages, surplus
decisions), written from Kafka into an empty bucket are exactly what the worker wrote; replayed over
the worker's own bucket nothing doubles; `--since` starts at the records Kafka stamped from then on."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

from pipeline import topics
from tests.conftest import Influx, Process, Stack
from tests.kafka import produce
from tests.profiles import METERS, hour_of

MEASUREMENTS = ("readings", "readings_5m", "averages_10m", "surplus")


def content(influx: Influx) -> dict[str, list[dict[str, object]]]:
    return {m: sorted(influx.query(f'SELECT * FROM "{m}"'), key=repr) for m in MEASUREMENTS}


def finished(process: Process, timeout: float = 120) -> str:
    assert process.proc.wait(timeout) == 0, process.output()[-3000:]
    return process.output()


def test_replay_rebuilds_a_bucket_and_doubles_nothing(stack: Stack, tmp_path: Path) -> None:
    meters = tmp_path / "meters.toml"
    meters.write_text(METERS)
    stack.env["WATTSTREAM_METERS_FILE"] = str(meters)
    readings = hour_of("clouds", 9)
    records = [(r.meter_id.encode(), r.to_json()) for r in readings]
    half = len(records) // 2
    worker = stack.start("worker", "worker")
    worker.wait_for("Worker]: Ready")
    asyncio.run(produce(stack.tansu.address, topics.raw_topic("reading"), records[:half]))
    stack.influx.wait_rows("SELECT power_w FROM readings", count=half)
    time.sleep(0.5)  # Kafka stamps the worker's outputs of the second half later
    since = datetime.now(UTC)
    time.sleep(0.5)
    asyncio.run(produce(stack.tansu.address, topics.raw_topic("reading"), records[half:]))
    grid = sum(r.meter_id.endswith("GRID") for r in readings)
    stack.influx.wait_rows("SELECT surplus_w FROM surplus", count=grid)
    stack.influx.wait_rows("SELECT power_w FROM readings", count=len(readings))
    time.sleep(2)  # the last averages and debounced readings
    written = content(stack.influx)
    assert [len(written[m]) for m in ("readings", "surplus")] == [len(readings), grid]
    assert written["readings_5m"] and written["averages_10m"]

    # into an empty bucket, beside the running worker: the same points
    empty = Influx(stack.influx.server)
    stack.env["WATTSTREAM_INFLUX_BUCKET"] = empty.bucket
    out = finished(stack.start("replay-empty", "replay"))
    assert f"{topics.READINGS} {len(readings)}," in out and f"{topics.SURPLUS} {grid};" in out, out
    assert content(empty) == written

    # over the worker's own bucket: nothing doubles
    stack.env["WATTSTREAM_INFLUX_BUCKET"] = stack.influx.bucket
    finished(stack.start("replay-again", "replay"))
    assert content(stack.influx) == written

    # --since: the records Kafka stamped from then on
    later = Influx(stack.influx.server)
    stack.env["WATTSTREAM_INFLUX_BUCKET"] = later.bucket
    out = finished(stack.start("replay-since", "replay", "--since", since.isoformat(), "--topic", topics.READINGS))
    assert f"{topics.READINGS} {len(records) - half};" in out, out
    second = {(r.meter_id, r.ts.strftime("%Y-%m-%dT%H:%M:%SZ")) for r in readings[half:]}
    assert sorted(later.query("SELECT * FROM readings"), key=repr) == \
        [row for row in written["readings"] if (row["meter"], row["time"]) in second]
