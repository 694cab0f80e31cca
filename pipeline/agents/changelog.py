"""The writes of an agent's table (`agents.state`: the entries, then the progress of `agents.progress`):
through the worker's own producer (`agents.outbox`), each to the changelog partition it names, in the
order given, and in the table only once Kafka has confirmed them.

Faust's own `table[key] = value` queues the changelog record in its producer's buffer, at about 300 µs
a record, and takes its partition from the stream's current event, which batches do not set. Its buffer
holds 1,000 records: a checkpoint with more (one entry per device changed since the last checkpoint:
10,000 meters give 10,000 entries of about 3 KB) made Faust hold every stream of the worker until the
buffer had drained, measured at about 3 s for 10,000 entries, and its flush at a rebalance gave up after
0.1 s without a word. Here a record costs an append to a record batch (docs/performance.md).

The records are the ones Faust writes (the raw key and value, no headers), so Faust restores the table
from them at the next start as from its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.agents.outbox import Outbox, Outlet
from pipeline.errors import ConfigError

Write = tuple[int, bytes, bytes]  # (changelog partition, key, value)


class Changelog:
    """The writes of one table (the memory store: `table.data` is what Faust restores into)."""

    def __init__(self, table: Any, outlet: Outlet) -> None:
        self._table, self._outlet = table, outlet
        self._topic: str = table.changelog_topic.get_topic_name()

    async def write(self, writes: Sequence[Write]) -> None:
        """Send `writes` and wait until Kafka has every one; then the table holds them. A failed delivery
        raises, and the table keeps what it had (Kafka may have some of them: a write is not atomic, so a
        checkpoint writes its progress only once its entries are confirmed)."""
        if not writes:
            return
        with self._outlet.table_writes.span():
            producer = await self._outlet.producer()
            partitions = await producer.partitions_for(self._topic)
            if missing := {partition for partition, _, _ in writes} - partitions:
                raise ConfigError(f"{self._topic} has no partition {min(missing)} ({len(partitions)} partitions): an "
                                  "agent's input topic and its changelog need as many (WATTSTREAM_KAFKA_PARTITIONS)")
            out = Outbox(self._outlet)
            for partition, key, value in writes:
                await out.send(self._topic, key, value, partition=partition)
            await out.confirm()
        data = self._table.data
        for _, key, value in writes:
            data[key] = value
