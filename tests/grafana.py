"""The provisioned Grafana dashboards as Grafana would run them: their panels' InfluxQL with the
macros and variables expanded the way Grafana's InfluxDB datasource does (`$timeFilter`,
`$__interval`, `$__interval_ms`, `$interval`, `$__from`, `$__to`, `$var`, `${var}`, `[[var]]`)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent
DASHBOARDS = ROOT / "grafana" / "dashboards"
UNITS = {"ms": timedelta(milliseconds=1), "s": timedelta(seconds=1), "m": timedelta(minutes=1),
         "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
# Grafana rounds range / max data points up to one of these (its `roundInterval`, in seconds)
NICE = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800,
        3600, 7200, 10800, 21600, 43200, 86400)
MAX_DATA_POINTS = 1000  # about a full-width panel


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard file by name (without `.json`)."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, also those inside rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def duration(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d|w)", text)
    if not match:
        raise ValueError(f"not a Grafana duration: {text!r}")
    return int(match[1]) * UNITS[match[2]]


def point_in_time(expr: str, now: datetime) -> datetime:
    """`now`, `now-6h`, `now/d` (the day so far; midnight in UTC here, the browser's zone in Grafana)."""
    match = re.fullmatch(r"now(?:-(\w+))?(?:/d)?", expr)
    if not match:
        raise ValueError(f"time expression not supported here: {expr!r}")
    at = now - duration(match[1]) if match[1] else now
    return at.replace(hour=0, minute=0, second=0, microsecond=0) if expr.endswith("/d") else at


@dataclass(frozen=True)
class Range:
    start: datetime
    end: datetime


def panel_range(dashboard: Mapping[str, Any], panel: Mapping[str, Any], now: datetime) -> Range:
    """The dashboard's time range, or the panel's relative time (`timeFrom`: `now/d`, `1h`, ...)."""
    time_from = panel.get("timeFrom") or dashboard["time"]["from"]
    if not time_from.startswith("now"):
        time_from = f"now-{time_from}"
    return Range(point_in_time(time_from, now), point_in_time(dashboard["time"]["to"], now))


def interval(span: Range, minimum: str | None) -> timedelta:
    """`$__interval`: the range over the data points, rounded up to a nice step, at least the panel's
    minimum interval."""
    raw = (span.end - span.start).total_seconds() / MAX_DATA_POINTS
    step = timedelta(seconds=next((n for n in NICE if n >= raw), NICE[-1]))
    return max(step, duration(minimum)) if minimum else step


def grafana_duration(step: timedelta) -> str:
    """A step as Grafana writes it into a query (`10s`, `1m`, `500ms`)."""
    ms = step // timedelta(milliseconds=1)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def expand(query: str, span: Range, step: timedelta, variables: Mapping[str, str]) -> str:
    """The query as Grafana sends it; a `$…` or `[[…]]` left over is an error."""
    from_ms, to_ms = (math.floor(t.timestamp() * 1000) for t in (span.start, span.end))
    macros = {
        "timeFilter": f"time >= {from_ms}ms and time <= {to_ms}ms",
        "__interval_ms": str(step // timedelta(milliseconds=1)),
        "__interval": grafana_duration(step),
        "interval": grafana_duration(step),
        "__from": str(from_ms),
        "__to": str(to_ms),
        **variables,
    }

    def value(match: re.Match[str]) -> str:
        name = match["braced"] or match["bracketed"] or match["plain"]
        if name not in macros:
            raise ValueError(f"unknown Grafana variable {match[0]!r} in {query!r}")
        return macros[name]

    expanded = re.sub(r"\$\{(?P<braced>\w+)\}|\[\[(?P<bracketed>\w+)\]\]|\$(?P<plain>\w+)", value, query)
    if "$" in expanded or "[[" in expanded:
        raise ValueError(f"unexpanded Grafana syntax in {expanded!r}")
    return expanded
