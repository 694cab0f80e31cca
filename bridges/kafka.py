"""Producing raw records: the exact bytes received, keyed by device id (else the origin), with the
headers `driver`, `origin` and `received_at` — several of them in one envelope when they queue up
(`RawProducer`, `pipeline.envelope`). What every Kafka client needs is in `pipeline.kafka`."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from pipeline import envelope, topics
from pipeline.brokers import Connection
from pipeline.envelope import Item
from pipeline.kafka import KeyPartitions, ensure_topics
from pipeline.models import format_ts
from pipeline.retry import Backoff, first_of

log = logging.getLogger(__name__)
ENVELOPE_BYTES = 512 * 1024  # at most this much in one envelope (Kafka's default request limit is 1 MiB)


def raw_headers(driver: str, origin: str, received_at: datetime) -> list[tuple[str, bytes]]:
    return [
        (topics.H_DRIVER, driver.encode()),
        (topics.H_ORIGIN, origin.encode()),
        (topics.H_RECEIVED_AT, format_ts(received_at).encode()),
    ]


class RawProducer:
    """An aiokafka producer for raw records; `send` returns each payload's delivery future.

    Sends go in rounds, one round in flight at a time: a payload that comes while a round is on its way
    waits, and the next round takes everything that waited, per raw partition as one envelope
    (`pipeline.envelope`, at most `ENVELOPE_BYTES`; a lone payload as a plain record), all handed to the
    Kafka client together (one request per broker). A payload that finds nothing in flight goes at once,
    so nothing waits for a batch to fill. Payloads go to the partition their key would (Kafka's default
    partitioner), in order."""

    def __init__(self, kafka: Connection, partitions: int, request_timeout_ms: int = 15_000) -> None:
        self._kafka = kafka
        self._partitions = partitions
        self._request_timeout_ms = request_timeout_ms  # how long a record may wait for Kafka before we give up
        self._producer: AIOKafkaProducer | None = None
        self._partitions_of = KeyPartitions()
        self._waiting: dict[Place, deque[Waiting]] = defaultdict(deque)
        self._sending: asyncio.Task[None] | None = None  # the rounds, while anything waits
        self._failed: BaseException | None = None  # a round failed: every send fails until `start` (or `deliver`)
        self.sizes: Counter[int] = Counter()  # payloads per record → records sent

    async def start(self, drivers: Iterable[str], retry_max: float = 30.0, stop: asyncio.Event | None = None) -> bool:
        """Connect (retrying with back-off until Kafka answers) and make sure the raw topics exist. False
        when `stop` was set first (also during a try: one against a host that does not answer takes the
        client's timeout, up to 40 s)."""
        backoff, stop = Backoff(1.0, retry_max), stop or asyncio.Event()
        while not stop.is_set():
            attempt = asyncio.ensure_future(self._connect(drivers))
            await first_of(attempt, stop.wait())
            if attempt.cancelled():
                return False
            if (exc := attempt.exception()) is None:
                return True
            if not isinstance(exc, KafkaError | OSError):
                raise exc
            wait = backoff.next()
            log.warning("waiting for Kafka at %s (%s), retry in %.0fs", self._kafka["bootstrap_servers"], exc, wait)
            await first_of(stop.wait(), within=wait)
        return False

    async def _connect(self, drivers: Iterable[str]) -> None:
        await ensure_topics(self._kafka, [topics.raw_topic(d) for d in drivers], self._partitions)
        producer = AIOKafkaProducer(**self._kafka, acks="all", linger_ms=5, request_timeout_ms=self._request_timeout_ms)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # (its connections: a failed start leaves them open)
            raise
        self._producer = producer
        self._partitions_of.clear()
        self._failed = None

    async def send(self, driver: str, key: str, value: bytes, origin: str,
                   received_at: datetime | None = None) -> asyncio.Future[None]:
        assert self._producer is not None, "RawProducer.start() first"
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._failed is not None:  # not after what failed: its owner sends that again first
            delivered.set_exception(self._failed)
            return delivered
        topic, encoded = topics.raw_topic(driver), key.encode()
        place = (topic, await self._partitions_of.of(self._producer, topic, encoded))
        headers = raw_headers(driver, origin, received_at or datetime.now(UTC))
        self._waiting[place].append((Item(encoded, value, tuple(headers)), delivered))
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._rounds(self._producer))
        return delivered

    async def _rounds(self, producer: AIOKafkaProducer) -> None:
        """Send what waits, a round at a time, until nothing waits. A record that fails makes every payload
        not yet delivered fail (and every later send, until `start`): the MQTT bridge then leaves the
        broker, which sends them again, in order; none of them reaches Kafka after a later one."""
        while any(self._waiting.values()):
            batches = [(place, _take(waiting)) for place, waiting in self._waiting.items() if waiting]
            handed: list[tuple[list[Waiting], asyncio.Future[object]]] = []
            failed: BaseException | None = None
            for place, batch in batches:
                if failed is None:
                    try:
                        handed.append((batch, await _send(producer, place, [item for item, _ in batch])))
                        continue
                    except BaseException as exc:  # (not handed to the client: it is not sent)
                        failed = exc
                _fail(batch, failed)
            for batch, delivery in handed:  # handed over: each as Kafka answers it
                try:
                    await asyncio.shield(delivery)
                except BaseException as exc:
                    failed = failed or exc
                    _fail(batch, exc)
                    if not isinstance(exc, KafkaError | OSError):
                        raise
                    continue
                self.sizes[len(batch)] += 1
                for _, delivered in batch:
                    if not delivered.done():
                        delivered.set_result(None)
            if failed is not None:
                self._failed = _as_failure(failed)
                for waiting in self._waiting.values():
                    _fail(list(waiting), failed)
                    waiting.clear()
                if not isinstance(failed, KafkaError | OSError):
                    raise failed
                return

    async def deliver(self, driver: str, key: str, value: bytes, origin: str, stop: asyncio.Event,
                      received_at: datetime | None = None) -> bool:
        """Send and wait until Kafka has the record, retrying with back-off (for sources that cannot be
        asked to send again, like a serial port). False only when `stop` was set first."""
        backoff = Backoff()
        received_at = received_at or datetime.now(UTC)
        while not stop.is_set():
            self._failed = None  # one record at a time: nothing of this source can overtake another
            try:
                await (await self.send(driver, key, value, origin, received_at))
                return True
            except KafkaError as exc:
                wait = backoff.next()
                log.warning("Kafka did not take a %s record from %s (%r), retry in %.0fs", driver, origin, exc, wait)
                await asyncio.sleep(wait)
        return False

    async def flush(self) -> None:
        """Until everything sent so far has been delivered or refused."""
        if self._sending is not None:
            await asyncio.gather(self._sending, return_exceptions=True)
        if self._producer is not None:
            await self._producer.flush()

    async def stop(self) -> None:
        """Stop once what was handed over is delivered or refused (within the request timeout); payloads
        still waiting then get `KafkaError` (their owners keep them: MQTT redelivers)."""
        if self._sending is not None:
            await asyncio.wait([self._sending], timeout=self._request_timeout_ms / 1000)
            self._sending.cancel()
            await asyncio.gather(self._sending, return_exceptions=True)
        for waiting in self._waiting.values():
            _fail(list(waiting), KafkaError("the producer stopped before sending this"))
        self._waiting.clear()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


Place = tuple[str, int]  # (raw topic, partition)
Waiting = tuple[Item, "asyncio.Future[None]"]


def _take(waiting: deque[Waiting]) -> list[Waiting]:
    """The next record's worth of what waits for one partition (at most `ENVELOPE_BYTES`, at least one)."""
    batch: list[Waiting] = []
    size = envelope.HEAD
    while waiting:
        item_size = envelope.size(waiting[0][0])
        if batch and size + item_size > ENVELOPE_BYTES:
            break
        batch.append(waiting.popleft())
        size += item_size
    return batch


async def _send(producer: AIOKafkaProducer, place: Place, items: list[Item]) -> asyncio.Future[object]:
    """One record to `place`: the payload alone, or their envelope; its delivery future."""
    topic, partition = place
    key, value, headers = envelope.record(items)
    return await producer.send(topic, value=value, key=key, partition=partition,  # type: ignore[no-any-return]
                               headers=headers)


def _as_failure(exc: BaseException) -> BaseException:
    """What a payload's owner gets when `exc` ended its send (a cancellation becomes a `KafkaError`)."""
    return exc if isinstance(exc, KafkaError | OSError) else KafkaError(f"not sent: {exc!r}")


def _fail(batch: list[Waiting], exc: BaseException) -> None:
    failed = _as_failure(exc)
    for _, delivered in batch:
        if not delivered.done():
            delivered.set_exception(failed)
