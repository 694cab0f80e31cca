"""Debounce, 10-minute averages and the surplus signal through the real parts (Tansu, the worker,
InfluxDB), from an hour of the recorded cloudy day produced as readings onto `meter.raw.reading`, with
the worker stopped and started again in the middle of a window and a debounce bucket."""

from __future__ import annotations

import asyncio
import statistics
from datetime import datetime, timedelta
from pathlib import Path

from pipeline import topics
from pipeline.backtest import Backtest
from pipeline.meters_file import MetersFile
from pipeline.models import Average, Reading, SurplusSignal
from tests.conftest import Stack
from tests.kafka import consume, produce
from tests.profiles import METERS, hour_of


def window_start(ts: datetime, minutes: int) -> datetime:
    return ts.replace(minute=ts.minute - ts.minute % minutes, second=0, microsecond=0)


def test_windows_and_surplus_survive_a_worker_restart_exactly_once(stack: Stack, tmp_path: Path) -> None:
    meters = tmp_path / "meters.toml"
    meters.write_text(METERS)
    stack.env["WATTSTREAM_METERS_FILE"] = str(meters)
    readings = hour_of("clouds", 9)
    cut = next(i for i, r in enumerate(readings) if r.ts >= r.ts.replace(minute=27, second=35))
    records = [(r.meter_id.encode(), r.to_json()) for r in readings]
    bootstrap, influx = stack.tansu.address, stack.influx

    worker = stack.start("worker", "worker")
    worker.wait_for("Worker]: Ready")
    asyncio.run(produce(bootstrap, topics.raw_topic("reading"), records[:cut]))
    influx.wait_rows("SELECT power_w FROM readings", count=cut)
    assert worker.stop() == 0  # the surplus agent is still busy with the site readings (Faust drops some)
    worker = stack.start("worker-again", "worker")
    worker.wait_for("Worker]: Ready")
    asyncio.run(produce(bootstrap, topics.raw_topic("reading"), records[cut:]))

    # averages: each closed window once, exactly the statistics of its readings
    by_window: dict[tuple[str, datetime], list[Reading]] = {}
    for r in readings:
        by_window.setdefault((r.meter_id, window_start(r.ts, 10)), []).append(r)
    last = readings[-1].ts
    closed = sorted(k for k in by_window if k[1] + timedelta(minutes=11) <= last)
    averages = [Average.from_json(v) for _, v in asyncio.run(consume(bootstrap, topics.AVERAGES_10M, len(closed)))]
    assert sorted((a.meter_id, a.start) for a in averages) == closed  # once each, none of the open one
    for average in averages:
        powers = [r.total.power_w for r in by_window[average.meter_id, average.start]]
        assert (average.count, average.total["power_w"].mean) == (len(powers), statistics.mean(powers))
        assert (average.total["power_w"].min, average.total["power_w"].max) == (min(powers), max(powers))

    # debounce: the first reading of every 5-minute bucket, once
    firsts: dict[tuple[str, datetime], Reading] = {}
    for r in readings:
        firsts.setdefault((r.meter_id, window_start(r.ts, 5)), r)
    debounced = [Reading.from_json(v) for _, v in asyncio.run(consume(bootstrap, topics.READINGS_5M, len(firsts)))]
    assert sorted((r.meter_id, r.ts) for r in debounced) == sorted((k[0], r.ts) for k, r in firsts.items())

    # surplus: one decision per grid reading, none lost or repeated across the restart, the same as the
    # offline backtest
    expected = [s for s in Backtest(MetersFile.load(meters)).run(readings, "surplus") if isinstance(s, SurplusSignal)]
    signals = [SurplusSignal.from_json(v) for _, v in asyncio.run(consume(bootstrap, topics.SURPLUS, len(expected)))]
    assert sorted(s.ts for s in signals) == [s.ts for s in expected]
    # (the PV value shown depends on how the two meters' partitions interleaved)
    assert [s.model_copy(update={"pv_w": None}) for s in signals] == \
        [s.model_copy(update={"pv_w": None}) for s in expected]
    assert any(s.charge for s in signals) and any(not s.charge for s in signals)

    # and in InfluxDB
    rows = influx.wait_rows("SELECT power_w_mean, power_w_count FROM averages_10m GROUP BY meter", count=len(closed))
    assert len(rows) == len(closed)
    assert len(influx.wait_rows("SELECT power_w FROM readings_5m", count=len(firsts))) == len(firsts)
    surplus = influx.wait_rows("SELECT surplus_w, charging, reason FROM surplus", count=len(signals))
    assert len(surplus) == len(signals) and {row["charging"] for row in surplus} == {0, 1}
