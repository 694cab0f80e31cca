"""InfluxDB sink: the v2 write API through `influxdb-client`, gzip, microsecond precision; the
line protocol written directly (`sinks.line_protocol`).

Measurements `readings`, `readings_5m`, `averages_10m`, `surplus` and `charger`: their tags, fields and
timestamps (event times) are in docs/operations.md, "What the sinks hold". The same record always maps
to the same points (idempotent), so a record written again after a kill changes nothing.
"""

from __future__ import annotations

import functools
import gzip
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, cast

import aiohttp
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService

from pipeline.errors import SinkRejected, SinkUnavailable
from pipeline.models import Average, Reading, SurplusSignal, to_us
from pipeline.settings import InfluxSettings
from pipeline.sinks import Debounced, Position, Record
from pipeline.sinks.line_protocol import Field, line, series

MEASUREMENT = "readings"
# Microseconds: readings of one meter that arrive in the same millisecond (a serial burst) stay apart.
PRECISION = WritePrecision.US


@functools.lru_cache(maxsize=1 << 16)
def _meter_series(measurement: str, meter: str, driver: str, phase: str) -> str:
    return series(measurement, {"meter": meter, "driver": driver, "phase": phase})


def _lines(out: list[str], prefix: str, fields: Mapping[str, Field], ts_us: int) -> None:
    text = line(prefix, fields, ts_us)
    if text is not None:
        out.append(text)


def reading_lines(reading: Reading, measurement: str = MEASUREMENT) -> list[str]:
    """A reading → one line per scope that has values (pure)."""
    ts_us = to_us(reading.ts)
    out: list[str] = []
    for phase, values in reading.scopes():
        fields: Mapping[str, Field] = {**values.present(), **reading.extra} if phase == "total" else values.present()
        _lines(out, _meter_series(measurement, reading.meter_id, reading.driver, phase), fields, ts_us)
    return out


def average_lines(average: Average) -> list[str]:
    ts_us = to_us(average.start)
    out: list[str] = []
    for phase, stats in average.scopes():
        if phase == "total":
            stats = {**stats, **average.extra}
        fields: dict[str, Field] = {}
        for name, s in stats.items():
            fields |= {f"{name}_mean": s.mean, f"{name}_min": s.min, f"{name}_max": s.max, f"{name}_count": s.count}
            if s.delta is not None:
                fields[f"{name}_delta"] = s.delta
        _lines(out, _meter_series("averages_10m", average.meter_id, average.driver, phase), fields, ts_us)
    return out


def surplus_lines(signal: SurplusSignal) -> list[str]:
    fields: dict[str, Field] = {
        "grid_w": float(signal.grid_w), "charger_w": float(signal.charger_w), "surplus_w": float(signal.surplus_w),
        "charging": int(signal.charge), "phases": signal.phases, "current_a": float(signal.current_a),
        "power_w": float(signal.power_w), "reason": signal.reason}
    for name in ("pv_w", "battery_w", "battery_soc"):
        value = getattr(signal, name)
        if value is not None:
            fields[name] = float(value)
    ts_us = to_us(signal.ts)
    out: list[str] = []
    _lines(out, series("surplus", {"site": signal.site}), fields, ts_us)
    for name, decision in signal.chargers.items():
        _lines(out, series("charger", {"site": signal.site, "charger": name}), {
            "charging": int(decision.charge), "phases": decision.phases, "current_a": float(decision.current_a),
            "power_w": float(decision.power_w), "mode": decision.mode, "charged_kwh": float(decision.charged_kwh),
            "reason": decision.reason}, ts_us)
    return out


def lines(record: Record) -> list[str]:
    """Any record → its line protocol (pure)."""
    if isinstance(record, Reading):
        return reading_lines(record)
    if isinstance(record, Debounced):
        return reading_lines(record.reading, "readings_5m")
    if isinstance(record, Average):
        return average_lines(record)
    return surplus_lines(record)


GZIP_LEVEL = 1  # a quarter of level 9's CPU (the client's default) for a slightly larger body, on a LAN


# What the sink calls of influxdb-client, typed: the client's methods have no annotations, and mypy strict
# calls no untyped function. `_write_service` is its `WriteService` seen so (the one cast).
class _WriteService(Protocol):
    async def post_write_async(self, org: str, bucket: str, body: bytes, *, precision: str, content_encoding: str,
                               content_type: str, async_req: bool, _return_http_data_only: bool) -> object: ...


class _Client(Protocol):  # InfluxDBClientAsync as such
    async def close(self) -> None: ...


_write_service = cast("Callable[[object], _WriteService]", WriteService)


def body(lines: list[str]) -> bytes:
    """What a write posts: the lines, gzipped."""
    return gzip.compress("\n".join(lines).encode(), compresslevel=GZIP_LEVEL)


class InfluxSink:
    name = "influxdb"

    def __init__(self, settings: InfluxSettings) -> None:
        if not settings.url:
            raise ValueError("InfluxSink needs WATTSTREAM_INFLUX_URL")
        self._settings = settings
        self._client: _Client | None = None
        self._service: _WriteService | None = None

    def written(self, source: str) -> None:
        """None: no position kept, the same record always overwrites the same points."""
        return None

    async def write(self, batch: Sequence[Record], through: Mapping[str, Position] | None = None) -> None:
        await self.write_lines([text for record in batch for text in lines(record)], indivisible=len(batch) == 1)

    async def write_lines(self, lines: list[str], indivisible: bool = True) -> None:
        """Line protocol as it is (also the worker's `pipeline` health points), gzipped; `indivisible`: too
        large (413) is final, not to be retried in smaller parts."""
        if lines:
            await self._post(body(lines), indivisible)

    async def _post(self, body: bytes, indivisible: bool) -> None:
        """The v2 write API through the client's `WriteService` (its `WriteApi` would gzip at level 9)."""
        if self._service is None:  # created on the running loop (aiohttp)
            s = self._settings
            try:
                token = s.api_token()
            except OSError as exc:  # compose writes the token file when InfluxDB is up: wait for it
                raise SinkUnavailable(f"InfluxDB token file unreadable: {exc}") from exc
            client = InfluxDBClientAsync(url=s.url, token=token, org=s.org, timeout=s.timeout_ms)
            self._client = client
            self._service = _write_service(client.api_client)
        try:
            await self._service.post_write_async(
                org=self._settings.org, bucket=self._settings.bucket, body=body, precision=PRECISION,
                content_encoding="gzip", content_type="text/plain; charset=utf-8",
                async_req=False, _return_http_data_only=False)
        except ApiException as exc:
            if exc.status in (400, 422) or (exc.status == 413 and indivisible):
                raise SinkRejected(f"InfluxDB refused the write ({exc.status}): {exc.body!r:.200}") from exc
            if exc.status in (401, 403):  # the token is refused: the next attempt reads the token file again
                await self.close()
            raise SinkUnavailable(f"InfluxDB answered {exc.status} {exc.reason}") from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise SinkUnavailable(f"InfluxDB unreachable: {exc!r}") from exc

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = self._service = None
