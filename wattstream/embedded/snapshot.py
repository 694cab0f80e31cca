"""What the embedded run keeps of its Kafka when it starts a new one: on a restart of `wattstream run`,
and when its broker has grown too large (a rotation, `embedded.run.Kafka.rotate`).

The embedded broker (Tansu) keeps every record in memory, deletes none and compacts nothing, so it
grows as long as it runs, and it starts empty. A snapshot, taken while no worker runs (each stopped
cleanly, so what it applied is saved), holds what the pipeline needs to go on in an empty Kafka:

- each agent's table at its last value per key: the states of devices, meters and sites, each without
  its input positions (`agents.state.Entry`), and without the partitions' progress and history (a new
  Kafka numbers its records from 0 again, and its partitions get a new history);
- the input records no agent has applied yet (raw and site readings, from a partition's progress to its
  end, less those a key's state holds already: an entry saved after the last progress that reached
  Kafka; of an envelope, the payloads of such keys), on the same partition, without their `position`
  header (their upstream offsets are of the old Kafka: taken as they come).

Everything else (readings, averages, decisions, dead letters) is already in the sink or with its
consumers and is not carried. A snapshot is taken in a process of its own (`main`), is one JSON-lines
file, written beside and renamed, is produced into the new Kafka by `restore` before the worker starts,
and is then deleted: a run that is killed later starts from nothing rather than from an older state.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridges.follow import read_to_end
from pipeline import envelope, topics
from pipeline.agents.progress import PROGRESS, Progress
from pipeline.agents.state import Entry
from pipeline.brokers import Connection, KafkaSettings
from pipeline.envelope import EnvelopeError
from pipeline.kafka import start

log = logging.getLogger(__name__)
VERSION = 1
STALL_SECONDS = 30.0  # reading a snapshot's records fails when none arrives for this long


@dataclass(frozen=True)
class Kept:
    """One record to produce into the new Kafka, on this partition."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None  # an input record's, as the bridge produced it

    def dump(self) -> dict[str, object]:
        return {"t": self.topic, "p": self.partition, "k": _b64(self.key), "v": _b64(self.value),
                "h": [[name, _b64(value)] for name, value in self.headers], "ts": self.timestamp_ms}

    @classmethod
    def load(cls, data: dict[str, Any]) -> Kept:
        headers = tuple((str(name), _bytes(value) or b"") for name, value in data["h"])
        return cls(str(data["t"]), int(data["p"]), _bytes(data["k"]), _bytes(data["v"]), headers, data.get("ts"))


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def _bytes(value: object) -> bytes | None:
    return None if value is None else base64.b64decode(str(value))


def is_changelog(topic: str, app_id: str) -> bool:
    return topic.startswith(f"{app_id}-") and topic.endswith("-state-changelog")


def is_input(topic: str) -> bool:
    return topic.startswith(topics.RAW_PREFIX) or topic == topics.SITE_READINGS


Place = tuple[str, int]  # an input partition: (topic, partition)
Held = dict[tuple[str, int, bytes], int]  # (input topic, partition, key) → offset its state holds


class Tables:
    """The changelog records, added in order, folded (pure): `result()` gives the last value of each key,
    made ready for a new Kafka (the state alone); the progress of each input partition; and (input
    topic, partition, key) → the offset of the last input record each key's state holds. Only the last
    record of each key is kept meanwhile."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, int, bytes], Kept] = {}
        self.progress: dict[Place, int] = {}
        self.inputs: dict[str, set[str]] = defaultdict(set)  # changelog → input topics its progress/history name

    def add(self, record: Kept) -> None:
        if record.key is None:
            return
        if Progress.is_own(record.key):
            if (named := Progress.named(record.key)) is not None:
                self.inputs[record.topic].add(named[0])
            if (place := Progress.named(record.key, (PROGRESS,))) is not None and record.value:
                self.progress[place] = int(record.value)
            return
        self.last[(record.topic, record.partition, record.key)] = record

    def result(self) -> tuple[list[Kept], dict[Place, int], Held]:
        kept: list[Kept] = []
        held: Held = {}
        for (changelog, partition, key), record in self.last.items():
            if not record.value:
                continue
            entry = Entry.load(record.value)
            kept.append(Kept(changelog, partition, key, Entry(entry.state).dump()))
            if entry.at is not None and len(self.inputs[changelog]) == 1:
                held[(next(iter(self.inputs[changelog])), entry.at[0], key)] = entry.at[1]
        return kept, self.progress, held


def unapplied(offset: int, record: Kept, held: Held) -> Kept | None:
    """An input record as it is carried: without the position of where it came from, and without what a
    key's state holds already (an envelope's payloads each by their own key); None if that is all of it."""
    def holds(key: bytes | None) -> bool:
        return offset <= held.get((record.topic, record.partition, key or b""), -1)

    headers = tuple((name, value) for name, value in record.headers if name != topics.H_POSITION)
    by_name = dict(headers)
    if topics.H_ENVELOPE in by_name:
        # (a key's entry is saved only between records, so it holds all of its payloads in one or none)
        try:
            items = envelope.items(record.key, record.value, by_name)
        except EnvelopeError:  # carried as it is: the worker dead-letters it
            items = []
        left = [item for item in items if not holds(item.key)]
        if items and not left:
            return None
        if len(left) < len(items):  # as the bridge would send what is left (a lone payload: plain)
            key, value, kept_headers = envelope.record(left)
            return Kept(record.topic, record.partition, key, value, tuple(kept_headers), record.timestamp_ms)
    elif holds(record.key):
        return None
    return Kept(record.topic, record.partition, record.key, record.value, headers, record.timestamp_ms)


async def take(kafka: Connection, app_id: str, path: Path) -> int:
    """Write the snapshot of the Kafka at `kafka` for the app `app_id` to `path`; the number of records
    carried. Call it with every worker stopped."""
    consumer = AIOKafkaConsumer(**kafka, enable_auto_commit=False, auto_offset_reset="earliest")
    await start(consumer)
    try:
        names = await consumer.topics()
        partitions = {name: len(consumer.partitions_for_topic(name) or ()) for name in names
                      if is_changelog(name, app_id) or is_input(name)}
        changelog = [TopicPartition(n, p) for n, count in partitions.items() if is_changelog(n, app_id)
                     for p in range(count)]
        folded = Tables()
        async for _, record in _read(consumer, kafka, {tp: 0 for tp in changelog}):
            folded.add(record)
        states, progress, held = folded.result()
        inputs = [TopicPartition(n, p) for n, count in partitions.items() if is_input(n) for p in range(count)]
        carried = [kept async for offset, r in _read(consumer, kafka, {
            tp: progress.get((tp.topic, tp.partition), 0) for tp in inputs})
            if (kept := unapplied(offset, r, held)) is not None]
    finally:
        await consumer.stop()
    await asyncio.to_thread(_write, path, partitions, [*states, *carried])
    log.info("snapshot of Kafka: %d table entries, %d records not applied yet → %s", len(states), len(carried), path)
    return len(states) + len(carried)


def _write(path: Path, partitions: dict[str, int], records: list[Kept]) -> None:
    """Beside, fsynced, renamed, and the directory fsynced: after a power cut the old file or the new one."""
    partial = path.with_suffix(".partial")
    with partial.open("w") as out:
        out.write(json.dumps({"version": VERSION, "partitions": partitions}) + "\n")
        for record in records:
            out.write(json.dumps(record.dump(), separators=(",", ":")) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def _read(consumer: AIOKafkaConsumer, kafka: Connection,
                starts: dict[TopicPartition, int]) -> AsyncIterator[tuple[int, Kept]]:
    """(offset, record) of every record of each partition from its start offset to its end."""
    async for tp, record in read_to_end(consumer, kafka, starts, STALL_SECONDS):
        yield record.offset, Kept(tp.topic, tp.partition, record.key, record.value, tuple(record.headers),
                                  record.timestamp)


async def restore(kafka: Connection, path: Path) -> None:
    """Produce the snapshot at `path` into the (new, empty) Kafka at `kafka`, then delete it."""
    partitions, records = await asyncio.to_thread(_load, path)
    await _produce(kafka, partitions, records)
    await asyncio.to_thread(path.unlink)
    await asyncio.to_thread(_sync_directory, path.parent)
    log.info("restored the snapshot %s: %d records", path, len(records))


def _load(path: Path) -> tuple[dict[str, int], list[Kept]]:
    """All of it before anything is produced: a file this version cannot read changes nothing."""
    with path.open() as lines:
        header = json.loads(lines.readline() or "null")
        if not isinstance(header, dict) or header.get("version") != VERSION:
            raise ValueError(f"{path}: snapshot version {header.get('version')} is not {VERSION}")
        return header["partitions"], [Kept.load(json.loads(line)) for line in lines]


async def _produce(kafka: Connection, partitions: dict[str, int], records: Iterable[Kept]) -> None:
    admin = AIOKafkaAdminClient(**kafka)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(name, count, 1) for name, count in partitions.items() if name not in existing]
        if wanted:
            await admin.create_topics(wanted)
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**kafka, acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = await asyncio.gather(*[await producer.send(record.topic, record.value, key=record.key,
                                                          partition=record.partition, headers=list(record.headers),
                                                          timestamp_ms=record.timestamp_ms) for record in records],
                                    return_exceptions=True)
        for result in sent:
            if isinstance(result, BaseException):
                raise result
    finally:
        await producer.stop()


def main(argv: list[str]) -> int:
    """`python -m wattstream.embedded.snapshot BOOTSTRAP APP_ID PATH`: `take` in a process of its own, as
    the run does it: reading a changelog of a hundred MB would leave the run's own heap that much larger
    (measured: 61 → 101 MB after one rotation)."""
    bootstrap, app_id, path = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(take(KafkaSettings(bootstrap=bootstrap).connection(), app_id, Path(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
