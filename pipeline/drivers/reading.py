"""Readings that are normalised already: one `Reading` JSON per record, as on `meter.readings` — for a
program that has its own decoder (or a recorded day to feed in) and wants wattstream's checks, windows,
sinks and surplus control. Produce it to `meter.raw.reading`, keyed by `meter_id`. `meter.readings`
itself is the worker's output: what is produced there is passed on to its consumers, not processed."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from pydantic import ValidationError

from pipeline.errors import NotAReading
from pipeline.models import Reading

DRIVER: Final = "reading"


def decode(payload: bytes, *, received_at: datetime, device_id: str | None = None) -> list[Reading]:
    """The reading as it is (its own `received_at` and `ts`)."""
    return [parse(payload)]


def parse(payload: bytes) -> Reading:
    """A `Reading` JSON → the reading; `NotAReading` saying which field is wrong."""
    try:
        return Reading.from_json(payload)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise NotAReading(f"not a Reading ({'.'.join(map(str, error['loc']))}: {error['msg']})") from exc
