"""FileSink writes the daily kei-format file by event-time day."""

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.models import Reading, Values
from pipeline.settings import FilesSettings
from pipeline.sinks import SinkUnavailable
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
