"""Pins what `pipeline.agents.faust_internals` relies on in Faust's private API. A Faust upgrade that
changes it fails here first. (That Faust restores a table from the records `agents.changelog` writes:
tests/integration/test_changelog_e2e.py.)"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faust.transport.consumer import ThreadDelegateConsumer
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP
from mode.threads import QueueServiceThread
from yarl import URL

from pipeline.agents.faust_internals import (
    FAUST_VERSION,
    fetch_promptly,
    restore_tables_to_the_real_end,
    seek,
)
from pipeline.kafka import end_offsets, start
from wattstream.embedded.servers import Server


def test_the_installed_faust_is_the_pinned_one() -> None:
    assert faust.__version__ == FAUST_VERSION


def test_faust_takes_the_changelog_end_from_a_fetch_not_from_tansus_short_list_offsets(tansu: Server) -> None:
    """Tansu answers ListOffsets with the first offset of the last produce batch + 1; a fetch says the truth."""
    tp = TopicPartition("changelog", 0)

    async def scenario() -> tuple[int, int, int]:
        producer = AIOKafkaProducer(bootstrap_servers=tansu.address, linger_ms=50)
        await producer.start()
        try:
            await asyncio.gather(*[await producer.send("changelog", b"x", partition=0) for _ in range(10)])
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=tansu.address)
        await consumer.start()
        try:
            listed = (await consumer.end_offsets([tp]))[tp]
            restore_tables_to_the_real_end()
            thread = SimpleNamespace(  # what Faust's consumer thread offers `_highwaters`
                _ensure_consumer=lambda: consumer, consumer=SimpleNamespace(in_transaction=False),
                transport=SimpleNamespace(url=[URL(f"kafka://{tansu.address}")], default_port=9092),
                app=SimpleNamespace(conf=SimpleNamespace(broker_credentials=None, ssl_context=None)))
            highwaters = aiokafka_driver.AIOKafkaConsumerThread._highwaters
            faust_end = (await highwaters(thread, [TP("changelog", 0)]))[TP("changelog", 0)]
        finally:
            await consumer.stop()
        return listed, (await end_offsets({"bootstrap_servers": tansu.address}, [tp]))[tp], faust_end

    listed, fetched, faust_end = asyncio.run(scenario())
    assert fetched == faust_end == 10
    assert listed < 10  # the Tansu bug this works around; when it is fixed, the workaround can go


def test_the_worker_consumer_waits_at_most_the_chosen_time_per_fetch(
        tansu: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    thread = aiokafka_driver.AIOKafkaConsumerThread
    assert "fetch_max_wait_ms=1500," in inspect.getsource(thread._create_worker_consumer)  # Faust's, fixed
    built = SimpleNamespace(_fetch_max_wait_ms=1500)
    monkeypatch.setattr(thread, "_create_worker_consumer", lambda self, transport: built)
    fetch_promptly(120)
    fetch_promptly(100)  # again: the last call wins, not wrapped twice
    assert thread._create_worker_consumer(None, None) is built and built._fetch_max_wait_ms == 100

    async def fetcher_waits() -> int:  # aiokafka builds its fetcher from the attribute when it starts
        consumer = AIOKafkaConsumer(bootstrap_servers=tansu.address, fetch_max_wait_ms=1500)
        consumer._fetch_max_wait_ms = 100
        await consumer.start()
        try:
            await consumer.topics()  # (a consumer stopped right after its start stops with CancelledError)
            return int(consumer._fetcher._fetch_max_wait_ms)
        finally:
            await consumer.stop()

    assert asyncio.run(fetcher_waits()) == 100


def test_a_consumer_stopped_right_after_its_start_cancels_nobody(tansu: Server) -> None:
    """aiokafka raises CancelledError from such a stop; inside Faust's table recovery (`end_offsets` after an
    error) that ended the recovery task, and the worker never became ready. `pipeline.kafka.start` avoids it."""

    async def start_and_stop(starting: Callable[[AIOKafkaConsumer], Awaitable[None]]) -> str:
        consumer = AIOKafkaConsumer(bootstrap_servers=tansu.address)
        await starting(consumer)
        try:
            await consumer.stop()
        except asyncio.CancelledError:
            return "cancelled"
        return "stopped"

    assert asyncio.run(start_and_stop(lambda consumer: consumer.start())) == "cancelled"  # what aiokafka does
    assert asyncio.run(start_and_stop(start)) == "stopped"


class SeekRecorder:  # stands in for the aiokafka consumer inside the consumer thread
    def __init__(self) -> None:
        self.seeks: list[tuple[TP, int, int]] = []

    def assignment(self) -> set[TP]:
        return {TP("input", 0)}

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset, threading.get_ident()))


class ConsumerThread(QueueServiceThread):
    def __init__(self) -> None:
        super().__init__()
        self.recorder = SeekRecorder()

    def _ensure_consumer(self) -> SeekRecorder:
        return self.recorder


def test_faust_seeks_from_the_apps_thread_and_ours_from_the_consumer_thread() -> None:
    assert aiokafka_driver.Consumer.__mro__[1] is ThreadDelegateConsumer
    assert "self._thread.seek(" in inspect.getsource(ThreadDelegateConsumer._seek)  # Faust's: in the app's thread
    assert "call_thread" not in inspect.getsource(aiokafka_driver.AIOKafkaConsumerThread.seek)
    assert "self.call_thread(" in inspect.getsource(aiokafka_driver.AIOKafkaConsumerThread.getmany)
    assert callable(aiokafka_driver.AIOKafkaConsumerThread._ensure_consumer)

    async def scenario() -> tuple[bool, bool, dict[TP, int | None], list[tuple[TP, int, int]], int]:
        thread = ConsumerThread()
        await thread.start()
        try:
            app = SimpleNamespace(consumer=SimpleNamespace(_thread=thread, _read_offset={}))
            assigned = await seek(app, TP("input", 0), 7)
            elsewhere = await seek(app, TP("input", 1), 3)
            return assigned, elsewhere, app.consumer._read_offset, thread.recorder.seeks, threading.get_ident()
        finally:
            await thread.stop()

    assigned, elsewhere, read_offset, seeks, ours = asyncio.run(scenario())
    assert (assigned, elsewhere) == (True, False)
    assert read_offset == {TP("input", 0): 7}
    assert [(tp, offset) for tp, offset, _ in seeks] == [(TP("input", 0), 7)]
    assert seeks[0][2] != ours
