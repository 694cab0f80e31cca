"""InfluxDB sink (DESIGN §5): the v2 write API through `influxdb-client`, gzip, microsecond precision.

- `readings` and `readings_5m` (the debounced ones): one point per reading and scope, tags `meter`,
  `driver`, `phase` (`total`, `L1`..`L3`); fields as in `Values` (energies as integers), `extra` sensors
  on the total point; timestamp = event time.
- `averages_10m`: one point per meter, window and scope, same tags, timestamp = window start; fields
  `<field>_mean`, `_min`, `_max`, `_count` and, for energy counters, `<field>_delta` (the window's Wh).
- `surplus`: tag `site`; fields `grid_w`, `pv_w`, `charger_w`, `surplus_w`, `charging` (0/1), `phases`,
  `current_a`, `power_w`, `reason`; timestamp = the grid reading's event time.
The same record always maps to the same points (idempotent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import aiohttp
from influxdb_client import Point, WritePrecision
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.rest import ApiException

from pipeline.models import Average, Reading, SurplusSignal
from pipeline.settings import InfluxSettings
from pipeline.sinks import Debounced, Record, SinkRejected, SinkUnavailable

MEASUREMENT = "readings"
# Microseconds: readings of one meter that arrive in the same millisecond (a serial burst) stay apart.
PRECISION = WritePrecision.US
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(ts: datetime) -> int:
    return (ts - EPOCH) // timedelta(microseconds=1)


def reading_points(reading: Reading, measurement: str = MEASUREMENT) -> list[Point]:
    """A reading → one point per scope that has values (pure)."""
    ts_us = _us(reading.ts)
    points = []
    for phase, values in reading.scopes():
        fields: dict[str, float | int] = values.present()
        if phase == "total":
            fields |= reading.extra
        if not fields:
            continue
        point = (
            Point(measurement)
            .tag("meter", reading.meter_id)
            .tag("driver", reading.driver)
            .tag("phase", phase)
            .time(ts_us, PRECISION)
        )
        for name, value in fields.items():
            point.field(name, value)
        points.append(point)
    return points


def average_points(average: Average) -> list[Point]:
    points = []
    for phase, stats in average.scopes():
        if phase == "total":
            stats = {**stats, **average.extra}
        if not stats:
            continue
        point = (Point("averages_10m").tag("meter", average.meter_id).tag("driver", average.driver)
                 .tag("phase", phase).time(_us(average.start), PRECISION))
        for name, s in stats.items():
            point.field(f"{name}_mean", s.mean).field(f"{name}_min", s.min).field(f"{name}_max", s.max)
            point.field(f"{name}_count", s.count)
            if s.delta is not None:
                point.field(f"{name}_delta", s.delta)
        points.append(point)
    return points


def surplus_points(signal: SurplusSignal) -> list[Point]:
    point = (Point("surplus").tag("site", signal.site).time(_us(signal.ts), PRECISION)
             .field("grid_w", float(signal.grid_w)).field("charger_w", float(signal.charger_w))
             .field("surplus_w", float(signal.surplus_w)).field("charging", int(signal.charge))
             .field("phases", signal.phases).field("current_a", float(signal.current_a))
             .field("power_w", float(signal.power_w)).field("reason", signal.reason))
    if signal.pv_w is not None:
        point.field("pv_w", float(signal.pv_w))
    return [point]


def points(record: Record) -> list[Point]:
    """Any record → its points (pure)."""
    if isinstance(record, Reading):
        return reading_points(record)
    if isinstance(record, Debounced):
        return reading_points(record.reading, "readings_5m")
    if isinstance(record, Average):
        return average_points(record)
    return surplus_points(record)


class InfluxSink:
    name = "influxdb"

    def __init__(self, settings: InfluxSettings) -> None:
        if not settings.url:
            raise ValueError("InfluxSink needs WATTSTREAM_INFLUX_URL")
        self._settings = settings
        self._client: InfluxDBClientAsync | None = None

    def _write_api(self):  # type: ignore[no-untyped-def]
        if self._client is None:  # created on the running loop (aiohttp)
            s = self._settings
            self._client = InfluxDBClientAsync(
                url=s.url, token=s.token.get_secret_value() if s.token else "", org=s.org,
                timeout=s.timeout_ms, enable_gzip=True,
            )
        return self._client.write_api()

    def written(self, source: str) -> None:
        """None: no position kept, the same record always overwrites the same points."""
        return None

    async def write(self, batch: Sequence[Record], through: Mapping[str, int] | None = None) -> None:
        lines = [point.to_line_protocol() for record in batch for point in points(record)]
        await self.write_lines(lines, indivisible=len(batch) == 1)

    async def write_lines(self, lines: list[str], indivisible: bool = True) -> None:
        """Line protocol as it is (also the worker's `pipeline` health points); `indivisible`: too large
        (413) is final, not to be retried in smaller parts."""
        if not lines:
            return
        try:
            await self._write_api().write(
                bucket=self._settings.bucket, org=self._settings.org, record=lines,
                write_precision=PRECISION,
            )
        except ApiException as exc:
            if exc.status in (400, 422) or (exc.status == 413 and indivisible):
                raise SinkRejected(f"InfluxDB refused the write ({exc.status}): {exc.body!r:.200}") from exc
            raise SinkUnavailable(f"InfluxDB answered {exc.status} {exc.reason}") from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise SinkUnavailable(f"InfluxDB unreachable: {exc!r}") from exc

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
