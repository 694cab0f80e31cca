"""File sink in the format of the classic Raspberry Pi logger (kjmat/keilog `FileRecorder`), the
default when no InfluxDB is configured: a daily `YYYYMMDD-<name>.txt`, one line per value, and a
daily `sumYYYYMMDD-<name>.txt`, one line per sensor and closed window. The line formats:
docs/operations.md, "What the sinks hold".

Two choices differ from keilog: times are event times in the configured zone (keilog used the time it
dequeued a value), and energy counters appear in the sum file as `<field>_delta`, the Wh of the
window, since the average of a counter means nothing.

Appending is made exact across kills by the `Journal` in the same directory: no line twice, none lost.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from pipeline.errors import SinkUnavailable
from pipeline.models import Average, Reading
from pipeline.settings import FilesSettings
from pipeline.sinks import Position, Record
from pipeline.sinks.journal import Journal


def _value(value: float | int) -> str:
    return str(value) if isinstance(value, int) else str(round(value, 4))


def reading_lines(reading: Reading, tz: tzinfo | None) -> Iterator[tuple[datetime, str]]:
    """(local event time, line) for every value of a reading (pure)."""
    local = reading.ts.astimezone(tz)
    head, tail = f"{local:%Y/%m/%d %H:%M:%S},{reading.meter_id},", f",{reading.driver}"
    for phase, values in reading.scopes():
        prefix = "" if phase == "total" else f"{phase}."
        for name, value in values.present().items():
            yield local, f"{head}{prefix}{name},{_value(value)}{tail}"
    for name, value in reading.extra.items():
        yield local, f"{head}{name},{_value(value)}{tail}"


def average_lines(average: Average, tz: tzinfo | None) -> Iterator[tuple[datetime, str]]:
    """(local window start, line) for every field of a closed window (pure)."""
    local = average.start.astimezone(tz)
    stamp = local.strftime("%Y/%m/%d %H:%M")
    scopes = [*average.scopes(), ("extra", average.extra)]
    for phase, stats in scopes:
        prefix = "" if phase in ("total", "extra") else f"{phase}."
        for name, s in stats.items():
            if s.delta is not None:
                yield local, f"{stamp},{average.meter_id},{prefix}{name}_delta,{s.delta}"
            else:
                yield local, f"{stamp},{average.meter_id},{prefix}{name},{_value(s.mean)}"


class FileSink:
    name = "files"

    def __init__(self, settings: FilesSettings) -> None:
        self._dir = settings.dir
        self._name = settings.name
        self._tz = ZoneInfo(settings.tz) if settings.tz else None
        self._opened: Journal | None = None  # read (and the files restored) at the first write

    def path_for(self, day: datetime, prefix: str = "") -> Path:
        return self._dir / f"{prefix}{day:%Y%m%d}-{self._name}.txt"

    def written(self, source: str) -> Position | None:
        return self._journal().through.get(source)

    def _journal(self) -> Journal:
        if self._opened is None:
            self._opened = Journal(self._dir)
        return self._opened

    async def write(self, batch: Sequence[Record], through: Mapping[str, Position] | None = None) -> None:
        by_file: dict[Path, list[str]] = defaultdict(list)
        for record in batch:  # the lines of one record share its time, so its file
            if isinstance(record, Reading):
                lines = list(reading_lines(record, self._tz))
                prefix = ""
            elif isinstance(record, Average):
                lines = list(average_lines(record, self._tz))
                prefix = "sum"
            else:
                continue
            if lines:
                by_file[self.path_for(lines[0][0], prefix)].extend(line for _, line in lines)
        if not by_file and not through:
            return
        try:
            journal = self._journal()
            journal.restore()  # what a kill, or a failed attempt of this batch, left behind
            journal.begin(by_file)
            lengths = {}
            for path, texts in by_file.items():
                with path.open("a", encoding="utf-8") as out:
                    out.write("\n".join(texts) + "\n")
                    out.flush()
                    os.fsync(out.fileno())
                    lengths[path.name] = out.tell()
            journal.commit(lengths, through or {})
        except OSError as exc:  # a full or read-only disk: hold the stream until it is fixed
            raise SinkUnavailable(f"cannot write {self._dir}: {exc}") from exc

    async def close(self) -> None:
        pass
