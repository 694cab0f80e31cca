"""Batch agents: `take_events` batches of one input topic, each record applied once (`progress`, `state`);
the records the sink rejects for good (`sinks.write_all`) are dead-lettered."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import faust
from aiokafka.errors import KafkaError
from faust.types import TP, EventT, StreamT

from pipeline.agents.changelog import Changelog
from pipeline.agents.deadletter import send_deadletter
from pipeline.agents.faust_internals import seek
from pipeline.agents.outbox import Outlet
from pipeline.agents.progress import RESEEK_SECONDS, Progress
from pipeline.agents.state import Batch
from pipeline.errors import Reason, SinkRejected, Stage
from pipeline.health import LAG, RECORDS
from pipeline.settings import WorkerSettings
from pipeline.sinks import Record, Rejected, record_json, record_key

log = logging.getLogger(__name__)

# A batch is applied in parts of at most this many bytes of input (each with its outputs confirmed and
# its sink write), so that a batch of envelopes (`pipeline.envelope`: a record may carry a thousand
# payloads) does not hold all of their readings at once.
PART_BYTES = 1 << 20


def dead_lettering(deadletter: faust.TopicT, source_topic: str) -> Rejected:
    """What the agents do with a record the sink refuses for good: dead-letter its JSON, keyed by meter
    or site, stage `sink`."""

    async def rejected(record: Record, exc: SinkRejected) -> None:
        await send_deadletter(deadletter, key=record_key(record), value=record_json(record), headers={},
                              source_topic=source_topic, stage=Stage.SINK, reason=Reason.REJECTED, error=str(exc))

    return rejected


def register_batches(app: faust.App, outlet: Outlet, topic: faust.TopicT, name: str, settings: WorkerSettings,
                     partitions: int, process: Callable[[Sequence[EventT[bytes]], Batch], Awaitable[None]], *,
                     batched: bool = True) -> None:
    """An agent (concurrency 1) handing `process` batches of at most `batch_size` events or
    `batch_seconds` (`batched=False`: one event at a time, for low-volume topics), each event once and
    in order per partition (`Progress`). `process` applies the events (a batch's `parts`, one after the
    other) to the entries it takes from the `Batch` and has its outputs confirmed. Every
    `checkpoint_seconds` the entries changed since the last checkpoint are saved and the progress after
    them, in the one table `<name>-state` (`agents.state` says why; written through `outlet`:
    `agents.changelog`); a kill repeats what came after the last checkpoint, with the same outputs."""
    table = app.Table(f"{name}-state", key_type=bytes, value_type=bytes, partitions=partitions)
    changelog = Changelog(table, outlet)
    turn = asyncio.Lock()  # a batch, or a checkpoint of the timer, a rebalance or the stop: one at a time
    progress = Progress(table, earliest=lambda tp: _earliest(app, tp), seek=lambda tp, offset: seek(app, tp, offset))
    entries = Batch(table, progress.history)
    busy = False  # applying a batch (which may hold the stream for long: a sink outage)
    void = False  # the partitions were revoked while the batch ran: what it did is not this worker's any more
    revoking = 0  # rebalances under way (`on_revoked`)
    saved_at = time.monotonic()

    async def run(events: Sequence[EventT[bytes]]) -> None:
        nonlocal busy, void
        busy, void = True, revoking > 0  # one that starts while a rebalance is under way: void from the start
        try:
            async with turn:  # (the timer's checkpoint may be under way)
                if void:  # revoked while it waited
                    return
                admitted = await progress.admit(events)
                if void:  # revoked while it waited for the broker
                    return
                await changelog.write(progress.new_histories(admitted))  # in Kafka before any output
                for part in parts(admitted):
                    if void:  # (revoked during the last part's checkpoint, too)
                        return
                    try:
                        await process(part, entries)
                    except BaseException:  # applied in part, its outputs not confirmed: back to the last checkpoint
                        entries.drop()
                        progress.drop()
                        raise
                    if void:  # its outputs are out; the new owner applies it again from its checkpoint
                        return
                    progress.advance(part)
                    RECORDS.labels(name).inc(len(part))
                    await checkpoint(in_batch=True)
        finally:
            busy = False
            if void:  # what it applied is not this worker's any more (`on_revoked`): the last checkpoint stands
                entries.drop()
                progress.drop()

    async def checkpoint(now: bool = False, in_batch: bool = False) -> None:
        """(Holding `turn`.) The entries changed since the last checkpoint, then the progress, when one is
        due (one span of table writes: a rebalance waits for both). When Kafka does not confirm them, what
        was applied since the last checkpoint is forgotten: it is applied again, as after a kill."""
        nonlocal saved_at
        if not now and time.monotonic() - saved_at < settings.checkpoint_seconds:
            return
        saved_at = time.monotonic()
        try:
            states, offsets = entries.changes(), progress.changes()
            with outlet.table_writes.span():
                await changelog.write(states)
                if in_batch and void:  # the batch is void: its states without their progress are safe (`Entry.at`)
                    return
                await changelog.write(offsets)  # only once Kafka has the states: a write may land in part
        except BaseException:
            entries.drop()
            progress.drop()
            raise

    async def checkpoint_between_batches(now: bool = False) -> None:
        """A checkpoint of the timer, a rebalance or the stop; one Kafka does not confirm is logged."""
        async with turn:
            try:
                await checkpoint(now)
            except KafkaError as exc:
                log.warning("%s: checkpoint not confirmed (%r); what came after the last one is applied again",
                            name, exc)

    async def on_revoked(sender: Any, revoked: set[TP], **_: Any) -> None:
        """Before the partitions go elsewhere (a rebalance, a stop): what is applied is saved and sent, so
        the next owner goes on from there. A batch still running (Faust waited for it in vain: a long
        sink outage) is void: it drops its entries and progress when it ends, never under its own feet,
        and the last checkpoint stands; a table write it has under way is waited for, so that none lands
        after the next owner has started. A batch that starts before this returns is void too."""
        nonlocal void, revoking
        revoking += 1
        try:
            if busy:
                void = True
                if not await outlet.table_writes.none(settings.rebalance_timeout / 2, app.rebalancing_count):
                    log.warning("%s: a checkpoint still under way at a rebalance may land after the next owner "
                                "has started", name)
            else:
                try:
                    await checkpoint_between_batches(now=True)
                finally:
                    entries.drop()
                    progress.drop()
        finally:
            revoking -= 1

    async def stopping(sender: Any, **_: Any) -> None:
        """A clean stop (its streams are drained by now): what is applied is saved, nothing repeats."""
        if not busy:
            await checkpoint_between_batches(now=True)

    # mode types a handler as a mypy_extensions Callable `(sender, *args, signal=, **kwargs)` that mypy matches
    # no function to, not even one of exactly that signature
    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]
    app.on_before_shutdown.connect(stopping)  # type: ignore[arg-type]

    async def tick() -> None:
        if not busy:  # (a batch's progress is its own while it runs: a void one drops it only when it ends)
            await checkpoint_between_batches()  # what the last batches changed, also when none follows (a quiet topic)
            await progress.retry()
        for tp in app.consumer.assignment():
            if tp.topic == topic.get_topic_name():
                highwater = app.consumer.highwater(tp)
                if highwater is not None and highwater >= 0:
                    applied = progress.stored(tp)
                    LAG.labels(name, str(tp.partition)).set(max(highwater - (applied or highwater), 0))
                    if not busy:
                        await progress.catch_up(tp, highwater)

    async def batches(stream: StreamT[bytes]) -> None:
        if batched:
            # Faust types an agent's stream as its `StreamT` interface, which does not declare `take_events`;
            # the stream it passes is a `faust.Stream` (the app's default `Stream` class), which has it
            batching = cast("faust.Stream[bytes]", stream)
            async for events in batching.take_events(settings.batch_size, within=settings.batch_seconds):
                await run(events)
        else:
            async for event in stream.events():
                await run([event])

    batches.__name__ = batches.__qualname__ = name.replace("-", "_")
    app.agent(topic, name=name, concurrency=1)(batches)
    app.timer(RESEEK_SECONDS, name=f"{name}-tick")(tick)


def parts(events: Sequence[EventT[bytes]], most: int = PART_BYTES) -> list[Sequence[EventT[bytes]]]:
    """`events` in order, cut where their values pass `most` bytes (each part at least one event)."""
    cut, size, start = [], 0, 0
    for i, event in enumerate(events):
        size += len(event.value or b"")
        if size > most and i > start:
            cut.append(events[start:i])
            start, size = i, len(event.value or b"")
    if start < len(events):
        cut.append(events[start:])
    return cut


async def _earliest(app: faust.App, tp: TP) -> int:
    return (await app.consumer.earliest_offsets(tp))[tp]
