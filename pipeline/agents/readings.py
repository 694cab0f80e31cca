"""`meter.readings` → the sink, in batches (`stream.take_events`). The events of a batch are acked
(so their offsets can be committed) only after the batch's write succeeded: on a transient failure
the agent backs off and retries, holding the stream while Kafka keeps the data; readings the sink
rejects for good are isolated one by one and dead-lettered with stage `sink`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import faust
from faust.types import EventT, StreamT
from pydantic import ValidationError

from pipeline import topics
from pipeline.agents.deadletter import header_map, send_deadletter
from pipeline.models import Reading
from pipeline.settings import WorkerSettings
from pipeline.sinks import Sink, SinkRejected, SinkUnavailable

log = logging.getLogger(__name__)


async def write_holding(sink: Sink, batch: Sequence[Reading], max_backoff: float) -> None:
    """Write until it succeeds; SinkRejected passes through."""
    backoff = 0.5
    while True:
        try:
            await sink.write(batch)
            return
        except SinkUnavailable as exc:
            log.warning("sink %s unavailable, holding %d readings, retry in %.1fs: %s",
                        sink.name, len(batch), backoff, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)


def register_readings(app: faust.App, readings: faust.TopicT, deadletter: faust.TopicT,
                      sink: Sink, settings: WorkerSettings) -> None:

    async def dead(event: EventT, stage: str, error: str) -> None:
        await send_deadletter(deadletter, key=event.key, value=event.value,
                              headers=header_map(event.headers), source_topic=topics.READINGS,
                              stage=stage, error=error)

    async def write_batch(events: Sequence[EventT]) -> None:
        batch: list[tuple[EventT, Reading]] = []
        for event in events:
            try:
                batch.append((event, Reading.from_json(event.value)))
            except ValidationError as exc:
                await dead(event, "decode", f"not a Reading: {exc.errors()[0]['msg']}")
        try:
            await write_holding(sink, [r for _, r in batch], settings.retry_max_seconds)
        except SinkRejected:
            for event, reading in batch:  # isolate the offenders
                try:
                    await write_holding(sink, [reading], settings.retry_max_seconds)
                except SinkRejected as exc:
                    await dead(event, "sink", str(exc))

    async def sink_readings(stream: StreamT[bytes]) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            await write_batch(events)

    app.agent(readings, name=f"sink-{sink.name}", concurrency=1)(sink_readings)
