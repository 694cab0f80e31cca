"""InfluxDB sink (DESIGN §5): the v2 write API through `influxdb-client`, gzip, microsecond precision.

Measurement `readings`, one point per reading and scope: tags `meter`, `driver`, `phase`
(`total`, `L1`..`L3`); fields as in `Values` (energies as integers), `extra` sensors on the total
point; timestamp = event time. The same reading always maps to the same points (idempotent).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import aiohttp
from influxdb_client import Point, WritePrecision
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.rest import ApiException

from pipeline.models import Reading
from pipeline.settings import InfluxSettings
from pipeline.sinks import SinkRejected, SinkUnavailable

MEASUREMENT = "readings"
# Microseconds: readings of one meter that arrive in the same millisecond (a serial burst) stay apart.
PRECISION = WritePrecision.US
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def reading_points(reading: Reading, measurement: str = MEASUREMENT) -> list[Point]:
    """A reading → one point per scope that has values (pure)."""
    ts_us = (reading.ts - EPOCH) // timedelta(microseconds=1)
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

    async def write(self, batch: Sequence[Reading]) -> None:
        lines = [point.to_line_protocol() for reading in batch for point in reading_points(reading)]
        if not lines:
            return
        try:
            await self._write_api().write(
                bucket=self._settings.bucket, org=self._settings.org, record=lines,
                write_precision=PRECISION,
            )
        except ApiException as exc:
            if exc.status in (400, 422) or (exc.status == 413 and len(batch) == 1):
                raise SinkRejected(f"InfluxDB refused the write ({exc.status}): {exc.body!r:.200}") from exc
            raise SinkUnavailable(f"InfluxDB answered {exc.status} {exc.reason}") from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise SinkUnavailable(f"InfluxDB unreachable: {exc!r}") from exc

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
