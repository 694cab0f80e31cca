"""Sinks behind one small protocol (STYLE 7): `async write(batch)`; the agent batches and retries.

A batch holds `Record`s: readings, debounced readings, averages and surplus signals; each sink maps
every kind it stores (InfluxDB: all four measurements; files: the daily and the 10-minute `sum` file).

A sink raises `SinkUnavailable` for a transient failure (the agent backs off and retries while holding
the stream: Kafka keeps the data) and `SinkRejected` when the target refuses the data for good (the
agent isolates the offending readings and dead-letters them). Writes are idempotent: the same reading
always becomes the same point/line, so a replay after a crash creates no duplicates in InfluxDB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pipeline.models import Average, Reading, SurplusSignal


@dataclass(frozen=True)
class Debounced:
    """A reading that passed the 5-minute debounce (`meter.readings.5m`, measurement `readings_5m`)."""

    reading: Reading


Record = Reading | Debounced | Average | SurplusSignal


def record_key(record: Record) -> bytes:
    """The Kafka key a record travels under: its meter, or its site."""
    if isinstance(record, SurplusSignal):
        return record.site.encode()
    return (record.reading if isinstance(record, Debounced) else record).meter_id.encode()


def record_json(record: Record) -> bytes:
    return (record.reading if isinstance(record, Debounced) else record).to_json()


class SinkUnavailable(Exception):
    """Transient: the target is down, slow or overloaded. Retry later."""


class SinkRejected(Exception):
    """Permanent: the target refuses this data (e.g. a field type conflict)."""


class Sink(Protocol):
    name: str

    async def write(self, batch: Sequence[Record]) -> None: ...

    async def close(self) -> None: ...
