"""Every panel of every provisioned dashboard, its InfluxQL expanded as Grafana does, returns data from
the real InfluxDB after the worker processed a live-like stream: raw three-phase IAMMETER payloads (two
meters, rising import counters, one garbage payload) arriving in two slices, and an hour of the
recorded cloudy day of a grid and a PV meter (surplus decisions on and off)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline import topics
from pipeline.models import Values
from tests.conftest import Influx, Stack
from tests.frames import vectors
from tests.grafana import dashboards, expand, interval, panel_range, panels
from tests.kafka import produce
from tests.profiles import METERS, hour_of

STEP = timedelta(seconds=5)
STEPS = 300  # 25 minutes of IAMMETER payloads: two closed 10-minute windows at least
SLICES = 2
CHOSEN = {"meter": "iammeter:M000", "site": "home"}


def rising_payloads(meters: int, start: datetime) -> tuple[list[tuple[bytes, bytes]], list[list[tuple[str, bytes]]]]:
    """The captured NEM payload every `STEP` per meter, its net import counter 1 Wh higher each time."""
    payload = json.loads(str(vectors("iammeter")["iammeter-doc-three-phase-nem"]["input"]))
    records, headers = [], []
    for step in range(STEPS):
        payload["Datas"][3][3] = round(1275.075 + step / 1000, 3)
        for meter in range(meters):
            records.append((f"M{meter:03d}".encode(), json.dumps(payload).encode()))
            headers.append([(topics.H_RECEIVED_AT, (start + step * STEP).isoformat().encode())])
    return records, headers


def wait_rows(influx: Influx, q: str, count: int) -> None:
    assert len(influx.wait_rows(q, count, timeout=90)) >= count, q


def values(rows: list[dict[str, Any]]) -> list[Any]:
    return [v for row in rows for k, v in row.items() if k != "time" and v is not None]


def test_every_dashboard_panel_returns_data_from_the_pipeline(stack: Stack, tmp_path: Path) -> None:
    meters = tmp_path / "meters.toml"
    meters.write_text(METERS + '\n[[meter]]\ndriver = "iammeter"\ndevice = "BAT"\nrole = "battery"\n')
    stack.env["WATTSTREAM_METERS_FILE"] = str(meters)
    now = datetime.now(UTC)
    # the IAMMETER stream ends now, within today (the "today" panels): after midnight it starts then
    start = max(now - STEPS * STEP, now.replace(hour=0, minute=0, second=0, microsecond=0))
    cloudy = hour_of("clouds", 9)
    shift = start - cloudy[-1].ts - STEP
    battery = [r.model_copy(update={"meter_id": "iammeter:BAT", "total": Values(power_w=500.0),
                                    "extra": {"soc_pct": 40 + i / 100}})
               for i, r in enumerate(cloudy) if r.meter_id.endswith("GRID")]  # a house battery charging
    site = [(r.meter_id.encode(), r.model_copy(update={"ts": r.ts + shift, "received_at": r.received_at + shift})
             .to_json()) for r in sorted([*cloudy, *battery], key=lambda r: r.ts)]
    raw, headers = rising_payloads(meters=2, start=start)
    raw.insert(1, (b"M999", b"not an IAMMETER payload"))
    headers.insert(1, [])
    bootstrap, influx = stack.tansu.address, stack.influx

    worker = stack.start("worker", "worker")
    worker.wait_for("Worker]: Ready")
    asyncio.run(produce(bootstrap, topics.raw_topic("reading"), site))
    size = -(-len(raw) // SLICES)
    for i in range(SLICES):  # as a live stream: the health points see the counters move
        asyncio.run(produce(bootstrap, topics.raw_topic("iammeter"), raw[i * size:(i + 1) * size],
                            headers[i * size:(i + 1) * size]))
        wait_rows(influx, "SELECT power_w FROM readings WHERE phase = 'total' AND meter =~ /M00/",
                  count=min(len(raw) - 1, (i + 1) * size - 1))
        time.sleep(11)  # the pipeline panels' minimum interval is 10 s
    wait_rows(influx, "SELECT surplus_w FROM surplus", count=sum(r.meter_id.endswith("GRID") for r in cloudy))
    wait_rows(influx, "SELECT power_w_mean FROM averages_10m WHERE meter = 'iammeter:M000'", count=2)

    for name, board in dashboards().items():
        now = max(datetime.now(UTC), start + STEPS * STEP)
        chosen = {}
        for variable in board["templating"]["list"]:
            if variable["type"] != "query":
                continue
            offered = values(influx.query(variable["query"]))
            assert CHOSEN[variable["name"]] in offered, (name, variable["name"], offered)
            chosen[variable["name"]] = CHOSEN[variable["name"]]
        for panel in panels(board):
            span = panel_range(board, panel, now)
            for target in panel["targets"]:
                q = expand(target["query"], span, interval(span, panel.get("interval")), chosen)
                rows = influx.query(q)
                assert values(rows), f"{name} / {panel['title']}: no data for {q}"

    # a few values a user reads off them
    board = dashboards()["overview"]
    today = next(p for p in panels(board) if p["title"] == "Import today")
    span = panel_range(board, today, max(datetime.now(UTC), start + STEPS * STEP))
    rows = influx.query(expand(today["targets"][0]["query"], span, timedelta(seconds=1), {}))
    assert {row["meter"]: round(row["spread"], 3) for row in rows} == \
        {"iammeter:M000": (STEPS - 1) / 1000, "iammeter:M001": (STEPS - 1) / 1000}
    board = dashboards()["pipeline"]
    dead = next(p for p in panels(board) if p["title"] == "Dead letters since the worker started")
    span = panel_range(board, dead, datetime.now(UTC))
    rows = influx.query(expand(dead["targets"][0]["query"], span, timedelta(seconds=10), {}))
    assert [(row["stage"], row["reason"], row["source"], row["last"]) for row in rows] == \
        [("frame", "malformed", topics.raw_topic("iammeter"), 1)]
