"""The file sink across a kill that comes before the worker saved any progress, and across a Kafka started
afresh (the embedded run's broker keeps nothing), through the real parts (Tansu, the worker): no line
twice after the kill, every line again from the new Kafka. The fault test (test_crash_e2e.py) kills at
random moments; this one makes sure of the moment that once doubled 320 lines in CI (seed 69560): the
first batch written, the first checkpoint not yet."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bridges.kafka import raw_headers
from pipeline import topics
from pipeline.brokers import KafkaSettings
from pipeline.kafka import ensure_topics
from tests.conftest import Process, Stack
from tests.kafka import produce
from wattstream.embedded.servers import start_tansu

SOURCE = topics.raw_topic("lines")
START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)


def payloads(first: int, count: int) -> tuple[list[tuple[bytes, bytes]], list[list[tuple[str, bytes]]]]:
    """One sensor unit (one key, so one partition, applied in order), a counter value per second."""
    records = [(b"bench", f"bench,counter,{i}\n".encode()) for i in range(first, first + count)]
    headers = [raw_headers("lines", "/dev/ttyUSB0", START + timedelta(seconds=i)) for i in range(first, first + count)]
    return records, headers


def send(stack: Stack, first: int, count: int) -> None:
    asyncio.run(ensure_topics(KafkaSettings(bootstrap=stack.tansu.address).connection(), [SOURCE],
                              KafkaSettings().partitions))
    asyncio.run(produce(stack.tansu.address, SOURCE, *payloads(first, count)))


def lines(files: Path) -> Counter[str]:
    return Counter(line for path in files.glob("2*.txt") for line in path.read_text().splitlines())


def value_line(i: int) -> str:
    return f"{START + timedelta(seconds=i):%Y/%m/%d %H:%M:%S},lines:bench,counter,{i:.1f},lines"


def until(condition: str, check: Callable[[], bool], process: Process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if process.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{condition}: not within {timeout} s\n{process.output()[-3000:]}")
        time.sleep(0.1)


def journal_offset(files: Path) -> int:
    journal = files / ".wattstream-files.json"
    if not journal.exists():
        return 0
    return max((kept[1] for source, kept in json.loads(journal.read_text())["through"].items()
                if source.startswith(f"{SOURCE}/")), default=0)


def test_no_line_twice_after_a_kill_before_the_first_checkpoint_and_all_again_from_a_new_kafka(
        stack: Stack, tmp_path: Path) -> None:
    files = tmp_path / "files"
    del stack.env["WATTSTREAM_INFLUX_URL"]
    stack.env |= {"WATTSTREAM_FILES_DIR": str(files), "WATTSTREAM_FILES_TZ": "UTC",
                  "WATTSTREAM_WORKER_CHECKPOINT_SECONDS": "3600"}  # no progress saved before the kill
    send(stack, 0, 20)
    worker = stack.start("worker", "worker")
    until("the 20 payloads written and in the journal", lambda: journal_offset(files) == 20, worker)
    worker.proc.kill()
    worker.proc.wait()
    assert lines(files) == Counter(value_line(i) for i in range(20))

    worker = stack.start("worker-again", "worker")  # reads the 20 again (no progress) and writes none of them
    send(stack, 20, 1)
    until("the payload after the kill written", lambda: value_line(20) in lines(files), worker)
    assert lines(files) == Counter(value_line(i) for i in range(21)), "a line twice, or one missing"
    assert worker.stop() == 0

    port = stack.tansu.port  # Kafka started afresh on the same address: offsets from 0 again
    stack.tansu.stop()
    stack.tansu = start_tansu(tmp_path / "tansu-new", port=port)
    try:
        send(stack, 0, 21)
        worker = stack.start("worker-new-kafka", "worker")
        until("every payload of the new Kafka written", lambda: lines(files)[value_line(20)] == 2, worker, 90)
        assert lines(files) == Counter({value_line(i): 2 for i in range(21)}), \
            "the files' positions in the old Kafka were taken for the new one's"
    finally:
        stack.stop()
        stack.tansu.stop()
