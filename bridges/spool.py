"""A bounded on-disk spool between an edge bridge and Kafka (a Raspberry Pi behind a flaky link).

Every record is appended to the spool first; a sender delivers the spool to Kafka in order and moves
a cursor (saved atomically) past each record Kafka has confirmed. So nothing is lost while Kafka is
unreachable nor across a bridge restart (at least once: a record confirmed but not yet past the saved
cursor is sent again). Bounded: above `max_bytes` the oldest segment is dropped, loudly (the count is
logged), because a Pi's SD card must not fill up.

Layout: `<dir>/<n:012d>.seg` files of records `<u32 header length><header JSON><u32 value length><value>`
and `<dir>/cursor` = `<segment> <offset>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bridges.kafka import RawProducer

log = logging.getLogger(__name__)
U32 = struct.Struct(">I")


@dataclass(frozen=True)
class RawRecord:
    """What a bridge received, waiting in the spool until Kafka has it: the bytes and where they came from."""

    driver: str
    key: str
    origin: str
    received_at: datetime
    value: bytes


class Spool:
    def __init__(self, directory: Path, max_bytes: int = 100 * 2**20, segment_bytes: int = 2**20) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.dropped = 0
        self._written = asyncio.Event()
        segments = self._segments()
        self._active = segments[-1] if segments else 0
        self._cursor = self._load_cursor(segments)
        self._repair(self._active)

    def _repair(self, segment: int) -> None:
        """Cut a record torn by a crash off the end of the active segment, so appends stay readable."""
        path = self._path(segment)
        if path.exists():
            good = max((end for _, end in self._records(segment, 0)), default=0)
            if good < path.stat().st_size:
                log.warning("spool %s: cutting %d bytes of a torn record", path, path.stat().st_size - good)
                with path.open("r+b") as out:
                    out.truncate(good)

    # files ------------------------------------------------------------------------------------------
    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.dir.glob("*.seg"))

    def _path(self, segment: int) -> Path:
        return self.dir / f"{segment:012d}.seg"

    def _load_cursor(self, segments: list[int]) -> tuple[int, int]:
        try:
            segment, offset = map(int, (self.dir / "cursor").read_text().split())
            return segment, offset
        except (OSError, ValueError):
            return (segments[0] if segments else 0), 0

    def _save_cursor(self) -> None:
        tmp = self.dir / "cursor.tmp"
        tmp.write_text(f"{self._cursor[0]} {self._cursor[1]}")
        os.replace(tmp, self.dir / "cursor")

    # writing --------------------------------------------------------------------------------------------
    def append(self, record: RawRecord) -> None:
        header = json.dumps({"driver": record.driver, "key": record.key, "origin": record.origin,
                             "received_at": record.received_at.isoformat()}).encode()
        path = self._path(self._active)
        if path.exists() and path.stat().st_size >= self.segment_bytes:
            self._active += 1
            path = self._path(self._active)
        with path.open("ab") as out:
            out.write(U32.pack(len(header)) + header + U32.pack(len(record.value)) + record.value)
            out.flush()
            os.fsync(out.fileno())
        self._enforce_bound()
        self._written.set()

    def _enforce_bound(self) -> None:
        segments = self._segments()
        while len(segments) > 1 and sum(self._path(s).stat().st_size for s in segments) > self.max_bytes:
            oldest = segments.pop(0)
            lost = sum(1 for _ in self._records(oldest, self._cursor[1] if oldest == self._cursor[0] else 0))
            self._path(oldest).unlink()
            self.dropped += lost
            log.error("spool over %d bytes: dropped %d unsent records (segment %d)", self.max_bytes, lost, oldest)
            if self._cursor[0] <= oldest:
                self._cursor = (segments[0], 0)
                self._save_cursor()

    # reading ---------------------------------------------------------------------------------------------
    def _records(self, segment: int, offset: int) -> Iterator[tuple[RawRecord, int]]:
        """Complete records of a segment from `offset`, with the offset after each."""
        try:
            data = self._path(segment).read_bytes()
        except OSError:
            return
        pos = offset
        while pos + 4 <= len(data):
            (hlen,) = U32.unpack_from(data, pos)
            if pos + 8 + hlen > len(data):
                return
            header = json.loads(data[pos + 4: pos + 4 + hlen])
            (vlen,) = U32.unpack_from(data, pos + 4 + hlen)
            end = pos + 8 + hlen + vlen
            if end > len(data):
                return  # a record still being written (or cut by a crash): wait / skip
            value = data[pos + 8 + hlen: end]
            yield RawRecord(header["driver"], header["key"], header["origin"],
                         datetime.fromisoformat(header["received_at"]), value), end
            pos = end

    def pending(self) -> int:
        segment, offset = self._cursor
        return sum(sum(1 for _ in self._records(s, offset if s == segment else 0))
                   for s in self._segments() if s >= segment)

    async def drain(self, producer: RawProducer, stop: asyncio.Event) -> None:
        """Deliver everything spooled, in order, forever (until `stop`)."""
        while not stop.is_set():
            self._written.clear()
            segment, offset = self._cursor
            for record, end in self._records(segment, offset):
                if not await producer.deliver(record.driver, record.key, record.value, record.origin, stop,
                                              record.received_at):
                    return
                self._cursor = (segment, end)
                self._save_cursor()
            if segment < self._active and self._cursor[0] == segment:  # a finished segment: next one
                self._path(segment).unlink(missing_ok=True)
                self._cursor = (segment + 1, 0)
                self._save_cursor()
                continue
            waiter = asyncio.ensure_future(self._written.wait())
            await asyncio.wait({waiter}, timeout=1.0)
            waiter.cancel()


async def deliver_spool(spool: Spool, producer: RawProducer, drivers: list[str], stop: asyncio.Event) -> None:
    """The sender side of a bridge: connect (waiting for Kafka as long as it takes), then drain.
    Cancel it to stop: what was not confirmed stays in the spool for the next start."""
    try:
        if await producer.start(drivers, stop=stop):
            await spool.drain(producer, stop)
    finally:
        await producer.stop()


async def stop_sender(sender: asyncio.Task[None]) -> None:
    sender.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sender
