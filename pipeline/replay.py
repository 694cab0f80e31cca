"""`wattstream replay`: write what Kafka still holds of the worker's outputs to the sink again — after
InfluxDB was lost or wiped, into a new bucket, or when InfluxDB joins a setup that ran on files.

It reads `meter.readings`, `meter.readings.5m`, `meter.averages.10m` and `power.surplus` (or the topics
asked for) with a consumer of its own: no group, no commits, the worker's tables and topics untouched,
so it can run beside the worker. It starts at the records Kafka stamped at or after `since` (all it
holds without), stops at the end each partition had when it was first read (or at `until`), and writes in
batches through `sinks.write_all` (held and retried while the sink is down). Points are idempotent:
what is already there is written over with the same values, never doubled. Records that do not parse
or that the sink refuses are counted and logged, not dead-lettered again (the worker did that)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline import topics
from pipeline.brokers import Connection
from pipeline.errors import SinkRejected
from pipeline.models import Average, Reading, SurplusSignal
from pipeline.sinks import Debounced, Record, Sink, write_all

log = logging.getLogger(__name__)

PARSERS: dict[str, Callable[[bytes], Record]] = {
    topics.READINGS: Reading.from_json,
    topics.READINGS_5M: lambda value: Debounced(Reading.from_json(value)),
    topics.AVERAGES_10M: Average.from_json,
    topics.SURPLUS: SurplusSignal.from_json,
}


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


async def replay(kafka: Connection, sink: Sink, names: Sequence[str], *, since: datetime | None = None,
                 until: datetime | None = None, batch_size: int = 1000, max_backoff: float = 30.0) -> Counter[str]:
    """Records written per topic, plus `unreadable` and `rejected`."""
    counts: Counter[str] = Counter()
    since_ms = _ms(since) if since is not None else 0
    until_ms = _ms(until) if until is not None else 2**63

    async def rejected(record: Record, exc: SinkRejected) -> None:
        counts["rejected"] += 1
        log.warning("the sink refused a record: %s", exc)

    consumer = AIOKafkaConsumer(**kafka, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()  # fresh metadata
        tps = [TopicPartition(name, p) for name in names for p in sorted(consumer.partitions_for_topic(name) or ())]
        if not tps:
            return counts
        consumer.assign(tps)
        pending = set(tps)
        if since is None:
            await consumer.seek_to_beginning(*tps)
        else:
            found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
            for tp in tps:
                if found[tp] is None:  # nothing stamped since then
                    pending.discard(tp)
                else:
                    consumer.seek(tp, found[tp].offset)
        # The end of a partition is the high watermark of its first fetch, not `end_offsets`: Tansu
        # answers ListOffsets(latest) with the base offset of the last batch.
        ends: dict[TopicPartition, int] = {}
        batch: list[Record] = []
        while pending:
            fetched = await consumer.getmany(*pending, timeout_ms=1000, max_records=batch_size)
            for tp, records in fetched.items():
                end = ends.get(tp)
                for record in records:
                    if (end is not None and record.offset >= end) or record.timestamp >= until_ms:
                        pending.discard(tp)
                        break
                    if record.timestamp < since_ms:
                        continue
                    try:
                        batch.append(PARSERS[tp.topic](record.value))
                        counts[tp.topic] += 1
                    except ValueError as exc:
                        counts["unreadable"] += 1
                        log.warning("%s[%d] offset %d not understood: %s", tp.topic, tp.partition, record.offset, exc)
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is not None and await consumer.position(tp) >= ends.setdefault(tp, highwater):
                    pending.discard(tp)
            if len(batch) >= batch_size or (batch and not pending):
                await write_all(sink, batch, max_backoff, rejected)
                batch = []
    finally:
        await consumer.stop()
    return counts
