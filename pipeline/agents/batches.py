"""Batch agents: `take_events` batches of one input topic, each record applied once (`progress`); and
writing a batch of records to the sink while holding the stream: transient failures back off and retry
(Kafka keeps the data, nothing is acked meanwhile); records the sink rejects for good are isolated one
by one and dead-lettered."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import faust
from faust.types import TP, EventT, StreamT

from pipeline.agents.deadletter import send_deadletter
from pipeline.agents.progress import RESEEK_SECONDS, Progress
from pipeline.health import LAG, RECORDS, SINK_FAILURES, SINK_WRITE
from pipeline.settings import WorkerSettings
from pipeline.sinks import Record, Sink, SinkRejected, SinkUnavailable, record_json, record_key

log = logging.getLogger(__name__)


async def write_holding(sink: Sink, batch: Sequence[Record], max_backoff: float) -> None:
    """Write until it succeeds; SinkRejected passes through."""
    backoff = 0.5
    while True:
        started = time.monotonic()
        try:
            await sink.write(batch)
            SINK_WRITE.labels(sink.name).observe(time.monotonic() - started)
            return
        except SinkRejected:
            SINK_FAILURES.labels(sink.name).inc()
            raise
        except SinkUnavailable as exc:
            SINK_FAILURES.labels(sink.name).inc()
            log.warning("sink %s unavailable, holding %d records, retry in %.1fs: %s",
                        sink.name, len(batch), backoff, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)


async def write_all(sink: Sink, batch: Sequence[Record], max_backoff: float,
                    deadletter: faust.TopicT, source_topic: str) -> None:
    """Write the batch; if the sink refuses it, write record by record and dead-letter the offenders
    (their JSON, keyed by meter or site, stage `sink`)."""
    try:
        await write_holding(sink, batch, max_backoff)
    except SinkRejected:
        for record in batch:
            try:
                await write_holding(sink, [record], max_backoff)
            except SinkRejected as exc:
                await send_deadletter(deadletter, key=record_key(record), value=record_json(record), headers={},
                                      source_topic=source_topic, stage="sink", reason="rejected",
                                      error=str(exc))


def register_batches(app: faust.App, topic: faust.TopicT, name: str, settings: WorkerSettings, partitions: int,
                     process: Callable[[Sequence[EventT]], Awaitable[None]], *, batched: bool = True) -> None:
    """An agent (concurrency 1) handing `process` batches of at most `batch_size` events or
    `batch_seconds` (`batched=False`: one event at a time, for low-volume topics), each event once and
    in order per partition (`Progress`, table `<name>-progress`). `process` applies the batch and saves
    its state; the progress is saved right after, in the same step."""
    progress = Progress(app.Table(f"{name}-progress", key_type=bytes, value_type=bytes, partitions=partitions),
                        earliest=lambda tp: _earliest(app, tp), seek=lambda tp, offset: _seek(app, tp, offset))

    async def run(events: Sequence[EventT]) -> None:
        admitted = await progress.admit(events)
        if admitted:
            await process(admitted)
            progress.save(admitted)
            RECORDS.labels(name).inc(len(admitted))

    async def tick() -> None:
        await progress.retry()
        for tp in app.consumer.assignment():
            if tp.topic == topic.get_topic_name():
                highwater = app.consumer.highwater(tp)
                if highwater is not None and highwater >= 0:
                    applied = progress.stored(tp)
                    LAG.labels(name, str(tp.partition)).set(max(highwater - (applied or highwater), 0))

    async def batches(stream: StreamT[bytes]) -> None:
        if batched:
            async for events in stream.take_events(settings.batch_size, within=settings.batch_seconds):
                await run(events)
        else:
            async for event in stream.events():
                await run([event])

    batches.__name__ = batches.__qualname__ = name.replace("-", "_")
    app.agent(topic, name=name, concurrency=1)(batches)
    app.timer(RESEEK_SECONDS, name=f"{name}-tick")(tick)


async def _earliest(app: faust.App, tp: TP) -> int:
    return (await app.consumer.earliest_offsets(tp))[tp]


async def _seek(app: faust.App, tp: TP, offset: int) -> bool:
    if tp not in app.consumer.assignment():
        return False
    await app.consumer.seek(tp, offset)
    return True
