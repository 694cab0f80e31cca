"""Sinks behind one small protocol: `async write(batch)`; the agent batches and retries.

A batch holds `Record`s: readings, debounced readings, averages and surplus signals; each sink maps
every kind it stores (InfluxDB: all four measurements; files: the daily and the 10-minute `sum` file).

A sink raises `SinkUnavailable` for a transient failure (`write_all` backs off and retries while the
agent holds the stream: Kafka keeps the data) and `SinkRejected` when the target refuses the data for
good (`write_all` isolates the offending records; the agents dead-letter them).

After a kill, an agent applies again the input its saved state did not hold yet, and writes the same
records again. InfluxDB takes that as it is: the same record always becomes the same point. A sink
that appends (the files) keeps its own position instead: `write` gets `through`, a `Position` for
each input partition once the batch is written, and `written(source)` tells the agent what it has
already, so that those records are not written twice (`agents.decode.SinkPositions`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from pipeline.errors import SinkRejected, SinkUnavailable
from pipeline.health import SINK_FAILURES, SINK_WRITE
from pipeline.models import Average, Reading, SurplusSignal
from pipeline.retry import Backoff

log = logging.getLogger(__name__)


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


class Position(NamedTuple):
    """How far a sink that appends has written one input partition: the first offset it does not have,
    in the partition's history (`agents.progress.Progress.history`), so that a position from a Kafka
    started afresh, whose offsets begin at 0 again, is never taken for one of this Kafka."""

    history: str
    offset: int


class Sink(Protocol):
    name: str

    async def write(self, batch: Sequence[Record], through: Mapping[str, Position] | None = None) -> None: ...

    def written(self, source: str) -> Position | None:
        """How far this sink has written input partition `source` (`<topic>/<partition>`); None: it has
        nothing of it, or it keeps no position (it is idempotent)."""
        ...

    async def close(self) -> None: ...


Rejected = Callable[[Record, SinkRejected], Awaitable[None]]


async def write_holding(sink: Sink, batch: Sequence[Record], max_backoff: float,
                        through: Mapping[str, Position] | None = None) -> None:
    """Write until it succeeds; SinkRejected passes through."""
    backoff = Backoff(0.5, max_backoff)
    while True:
        started = time.monotonic()
        try:
            await sink.write(batch, through)
            SINK_WRITE.labels(sink.name).observe(time.monotonic() - started)
            return
        except SinkRejected:
            SINK_FAILURES.labels(sink.name).inc()
            raise
        except SinkUnavailable as exc:
            SINK_FAILURES.labels(sink.name).inc()
            wait = backoff.next()
            log.warning("sink %s unavailable, holding %d records, retry in %.1fs: %s", sink.name, len(batch), wait, exc)
            await asyncio.sleep(wait)


async def write_all(sink: Sink, batch: Sequence[Record], max_backoff: float, rejected: Rejected,
                    through: Mapping[str, Position] | None = None) -> None:
    """Write the batch; if the sink refuses it, write record by record and hand each offender to
    `rejected`. (Only InfluxDB refuses records, and it keeps no position: `through` goes with the
    whole batch.)"""
    try:
        await write_holding(sink, batch, max_backoff, through)
    except SinkRejected:
        for record in batch:
            try:
                await write_holding(sink, [record], max_backoff)
            except SinkRejected as exc:
                await rejected(record, exc)
