"""The one place wattstream touches Faust's private API (faust-streaming, pinned in pyproject.toml).

`restore_tables_to_the_real_end()`: Faust restores a table up to the changelog's end as ListOffsets
reports it; Tansu reports it short (see `pipeline.kafka.end_offsets`).

`fetch_promptly(max_wait_ms)`: Faust builds its consumer with `fetch_max_wait_ms=1500` and no setting to
change it. Apache Kafka answers a waiting fetch as soon as a record arrives; Tansu waits out a good part
of the time (measured: p50 391 ms from produce to consume at 1500 ms, 55 ms at 250, 3 ms at 100), so
every record would wait there before the worker sees it.

`seek(app, tp, offset)`: Faust's `Consumer.seek` calls aiokafka's (synchronous) seek from the app's thread,
while aiokafka runs in Faust's consumer thread: a seek that lands while that thread hands out fetched
records deletes the partition's buffer under it (`KeyError` in aiokafka's `fetched_records`, the fetcher
crashes and the worker stops — seen once in the fault test). This seek runs in the consumer thread, like
every other call Faust makes to aiokafka.

(The agents' tables are written without Faust, `agents.changelog`; Faust only restores them.)

tests/agents/test_faust_internals.py pins what this relies on: the installed version, that Faust's
consumer thread takes its highwaters from `end_offsets` — against a real Tansu —, that the consumer
Faust builds waits at most `max_wait_ms` per fetch, and that Faust's own seek is still the unsafe one
while ours runs in the consumer thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

from pipeline.kafka import end_offsets

log = logging.getLogger(__name__)
FAUST_VERSION = "0.15.3"  # the version whose behaviour the test pins (pyproject.toml pins the same)


FETCH_SECONDS = 15.0  # how long the changelog ends may take before Faust's own are used


def restore_tables_to_the_real_end() -> None:
    """Make Faust take each changelog's end from `pipeline.kafka.end_offsets` (a fetch's high watermark)
    instead of ListOffsets, which Tansu answers short: Faust would stop restoring a table before its
    last records (measured: 7 of 50 keys back after a restart) and a standby would fail its consistency
    check. Patches the aiokafka consumer thread's `_highwaters`, for every app in the process; idempotent."""
    # Any: a method of the class is replaced below, an assignment mypy refuses on the class's own type
    thread: Any = aiokafka_driver.AIOKafkaConsumerThread
    if getattr(thread._highwaters, "wattstream", False):
        return

    async def _highwaters(self: Any, partitions: list[TP]) -> Mapping[TP, int]:
        listed: Mapping[TP, int] = await original(self, partitions)
        if self.consumer.in_transaction:  # not used by wattstream
            return listed
        kafka = {"bootstrap_servers": aiokafka_driver.server_list(self.transport.url, self.transport.default_port),
                 **aiokafka_driver.credentials_to_aiokafka_auth(self.app.conf.broker_credentials,
                                                                 self.app.conf.ssl_context)}
        try:
            ends = await asyncio.wait_for(end_offsets(kafka, [TopicPartition(tp.topic, tp.partition)
                                                                  for tp in partitions]), FETCH_SECONDS)
        except (KafkaError, TimeoutError) as exc:  # never hold recovery up: Faust's own answer then
            log.warning("changelog ends not fetched (%r); restoring up to the listed ends", exc)
            return listed
        except asyncio.CancelledError:  # not this task's: a recovery that raises it here never ends
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            log.warning("changelog ends not fetched (cancelled inside aiokafka); restoring up to the listed ends")
            return listed
        return {tp: max(listed[tp], ends[TopicPartition(tp.topic, tp.partition)]) for tp in partitions}

    original = thread._highwaters
    _highwaters.wattstream = True  # type: ignore[attr-defined]
    thread._highwaters = _highwaters


def fetch_promptly(max_wait_ms: int) -> None:
    """Make the consumer Faust builds for a worker wait at most `max_wait_ms` for a fetch to fill (for
    every app in the process; the last call wins). aiokafka reads `_fetch_max_wait_ms` when it starts."""
    # Any: a method of the class is replaced below, an assignment mypy refuses on the class's own type
    thread: Any = aiokafka_driver.AIOKafkaConsumerThread
    create = getattr(thread._create_worker_consumer, "wattstream_original", thread._create_worker_consumer)

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms
        return consumer

    _create_worker_consumer.wattstream_original = create  # type: ignore[attr-defined]
    thread._create_worker_consumer = _create_worker_consumer


async def seek(app: Any, tp: TP, offset: int) -> bool:
    """Make `app`'s consumer read `tp` again from `offset`, in the consumer thread; False (and no seek) when
    `tp` is not assigned to this worker (any more)."""
    consumer = app.consumer

    async def in_the_consumer_thread() -> bool:
        aiokafka_consumer = consumer._thread._ensure_consumer()
        if tp not in aiokafka_consumer.assignment():
            return False
        aiokafka_consumer.seek(tp, offset)
        return True

    if not await consumer._thread.call_thread(in_the_consumer_thread):
        return False
    consumer._read_offset[tp] = offset or None  # what Faust's own seek does after aiokafka's
    return True
