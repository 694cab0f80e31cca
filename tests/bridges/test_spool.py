"""The bridges' on-disk spool: order, restart, bound."""

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from bridges.spool import RawRecord, Spool

AT = datetime(2025, 6, 1, tzinfo=UTC)


class FakeProducer:
    """Takes records after `refuse` failed attempts, in the order given."""

    def __init__(self, stop: asyncio.Event, want: int) -> None:
        self.taken: list[bytes] = []
        self.stop, self.want = stop, want

    async def deliver(self, driver: str, key: str, value: bytes, origin: str, stop: asyncio.Event,
                      received_at: datetime | None = None) -> bool:
        assert received_at == AT and driver == "lines" and origin == "/dev/ttyUSB0"
        self.taken.append(value)
        if len(self.taken) >= self.want:
            self.stop.set()
        return True


def record(i: int) -> RawRecord:
    return RawRecord("lines", "k", "/dev/ttyUSB0", AT, b"u,t,%d" % i)


def drain(spool: Spool, want: int) -> list[bytes]:
    async def go() -> list[bytes]:
        stop = asyncio.Event()
        producer = FakeProducer(stop, want)
        await asyncio.wait_for(spool.drain(producer, stop), 10)  # type: ignore[arg-type]
        return producer.taken

    return asyncio.run(go())


def test_in_order_across_segments_and_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=100)
    for i in range(10):
        spool.append(record(i))
    assert len(list(tmp_path.glob("*.seg"))) > 2
    assert drain(spool, 4) == [b"u,t,%d" % i for i in range(4)]
    again = Spool(tmp_path, segment_bytes=100)  # the bridge restarted: cursor and segments from disk
    assert again.pending() == 6
    assert drain(again, 6) == [b"u,t,%d" % i for i in range(4, 10)]
    assert Spool(tmp_path, segment_bytes=100).pending() == 0


def test_bounded_drops_the_oldest_and_counts(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=400, segment_bytes=100)
    for i in range(40):
        spool.append(record(i))
    assert spool.dropped > 0
    kept = spool.pending()
    assert kept + spool.dropped == 40
    assert sum(p.stat().st_size for p in tmp_path.glob("*.seg")) <= 400
    assert drain(spool, kept) == [b"u,t,%d" % i for i in range(40 - kept, 40)]


def test_a_record_torn_by_a_crash_is_cut_on_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(record(1))
    with (tmp_path / "000000000000.seg").open("ab") as out:
        out.write(b"\x00\x00\x00\x40{partial")
    assert spool.pending() == 1  # the torn record is not read
    restarted = Spool(tmp_path)
    restarted.append(record(2))
    assert drain(restarted, 2) == [b"u,t,1", b"u,t,2"]
