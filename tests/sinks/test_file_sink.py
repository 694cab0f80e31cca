"""FileSink writes the daily kei-format file by event-time day."""

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.errors import SinkUnavailable
from pipeline.models import Reading, Values
from pipeline.settings import FilesSettings
from pipeline.sinks import Position
from pipeline.sinks.files import FileSink


def reading(ts: datetime) -> Reading:
    return Reading(meter_id="iammeter:F1", driver="iammeter", ts=ts, received_at=ts, total=Values(power_w=5.0))


def test_daily_files_by_event_time(tmp_path: Path) -> None:
    sink = FileSink(FilesSettings(dir=tmp_path, name="home", tz="UTC"))
    asyncio.run(sink.write([reading(datetime(2025, 6, 1, 23, 59, 59, tzinfo=UTC)),
                            reading(datetime(2025, 6, 2, 0, 0, 1, tzinfo=UTC))]))
    assert (tmp_path / "20250601-home.txt").read_text() == "2025/06/01 23:59:59,iammeter:F1,power_w,5.0,iammeter\n"
    assert (tmp_path / "20250602-home.txt").read_text() == "2025/06/02 00:00:01,iammeter:F1,power_w,5.0,iammeter\n"


def test_unwritable_directory_holds_the_stream(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    sink = FileSink(FilesSettings(dir=blocker / "sub"))
    with pytest.raises(SinkUnavailable):
        asyncio.run(sink.write([reading(datetime(2025, 6, 1, tzinfo=UTC))]))


def day_file(tmp_path: Path) -> Path:
    return tmp_path / "20250601-home.txt"


def line(second: int) -> str:
    return f"2025/06/01 10:00:{second:02d},iammeter:F1,power_w,5.0,iammeter\n"


def at(second: int) -> Reading:
    return reading(datetime(2025, 6, 1, 10, 0, second, tzinfo=UTC))


def test_what_a_killed_batch_left_half_written_is_cut_off_and_the_position_says_so(tmp_path: Path) -> None:
    settings = FilesSettings(dir=tmp_path, name="home", tz="UTC")
    sink = FileSink(settings)
    asyncio.run(sink.write([at(0), at(1)], {"meter.readings/0": Position("h1", 2)}))
    assert sink.written("meter.readings/0") == ("h1", 2) and sink.written("meter.readings/1") is None
    with day_file(tmp_path).open("a") as out:  # the next batch was killed after part of a line
        out.write(line(2) + "2025/06/01 10:0")
    again = FileSink(settings)  # the restarted worker
    assert again.written("meter.readings/0") == ("h1", 2)  # so the agent writes offsets 2.. again
    asyncio.run(again.write([at(2), at(3)], {"meter.readings/0": Position("h1", 4)}))
    assert day_file(tmp_path).read_text() == line(0) + line(1) + line(2) + line(3)


def test_a_new_file_is_entered_before_the_first_line_goes_in(tmp_path: Path) -> None:
    settings = FilesSettings(dir=tmp_path, name="home", tz="UTC")
    sink = FileSink(settings)
    asyncio.run(sink.write([at(0)], {"meter.readings/0": Position("h1", 1)}))
    next_day = tmp_path / "20250602-home.txt"
    sink._journal().begin([next_day])  # the worker is killed right after this, the line half written
    next_day.write_text("2025/06/02 00:00:00,iam")
    asyncio.run(FileSink(settings).write([at(1)], {"meter.readings/0": Position("h1", 2)}))  # the restarted worker
    assert next_day.read_text() == "" and day_file(tmp_path).read_text() == line(0) + line(1)


def test_a_batch_that_failed_half_way_is_cut_back_before_it_is_written_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = FileSink(FilesSettings(dir=tmp_path, name="home", tz="UTC"))
    asyncio.run(sink.write([at(0)], {"meter.readings/0": Position("h1", 1)}))
    next_day = reading(datetime(2025, 6, 2, 0, 0, 0, tzinfo=UTC))
    real_fsync, calls = os.fsync, []

    def failing_second_fsync(fd: int) -> None:  # the disk fails after the first file of the batch
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_second_fsync)
    with pytest.raises(SinkUnavailable):
        asyncio.run(sink.write([at(1), next_day], {"meter.readings/0": Position("h1", 3)}))
    monkeypatch.setattr(os, "fsync", real_fsync)
    asyncio.run(sink.write([at(1), next_day], {"meter.readings/0": Position("h1", 3)}))  # the agent holds and retries
    assert day_file(tmp_path).read_text() == line(0) + line(1)
    assert (tmp_path / "20250602-home.txt").read_text() == "2025/06/02 00:00:00,iammeter:F1,power_w,5.0,iammeter\n"
    assert sink.written("meter.readings/0") == ("h1", 3)


def test_a_position_written_before_positions_had_a_history_is_not_taken(tmp_path: Path) -> None:
    (tmp_path / ".wattstream-files.json").write_text('{"files": {}, "through": {"meter.readings/0": 7}}')
    sink = FileSink(FilesSettings(dir=tmp_path, name="home", tz="UTC"))
    assert sink.written("meter.readings/0") is None
    asyncio.run(sink.write([at(0)], {"meter.readings/0": Position("h2", 1)}))
    assert FileSink(FilesSettings(dir=tmp_path)).written("meter.readings/0") == ("h2", 1)
