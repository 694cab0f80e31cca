"""Serial line sensors (Arduino, XBee, TWELite and the like): one reading per line, either the form of
the classic Raspberry Pi logger (kjmat/keilog: `UnitID,SensorID,Value`, a fourth field ignored) or a
JSON object. The forms, the names allowed, what goes to `total` and what to `extra`:
docs/meters/serial-lines.md.

The meter id is `lines:<UnitID>`. The device has no clock: `ts` = receive time. Where a line has no
unit id, the bridge's device id (the serial port's configured name) is used.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Final

from pipeline.errors import FrameError, shorten
from pipeline.models import Reading, Values

DRIVER: Final = "lines"
NAME: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
FIELDS: Final = frozenset(Values.model_fields)
INTEGER_FIELDS: Final = frozenset(name for name in FIELDS if name.endswith(("_wh", "_varh")))
MAX_LINE: Final = 1024


class LineFramer:
    """`feed(chunk)` → complete lines (without CR/LF); skips blank and `#` lines; of a line longer than
    `MAX_LINE` (its line end aside) its first `MAX_LINE` + 1 bytes, once, and the rest is dropped up to
    its end (`decode` makes it a dead letter that says so)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        self._buf += chunk
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > MAX_LINE + 1:  # (+1: a line's CR may come before its LF)
                    if not self._discarding and not self._buf.lstrip(b"\r\t ").startswith(b"#"):
                        yield bytes(self._buf[:MAX_LINE + 1])
                    self._buf.clear()
                    self._discarding = True
                return
            line = bytes(self._buf[:end]).strip(b"\r\t ")[:MAX_LINE + 1]
            del self._buf[: end + 1]
            if self._discarding:
                self._discarding = False
                continue
            if line and not line.startswith(b"#"):
                yield line


def _value(raw: object, sensor: str) -> float:
    if isinstance(raw, bool):
        raise FrameError(f"lines sensor {sensor} value is not a number: {shorten(raw)}")
    try:
        value = float(raw)  # type: ignore[arg-type]
    except OverflowError:  # a JSON integer beyond any float
        value = math.inf
    except (TypeError, ValueError) as exc:
        raise FrameError(f"lines sensor {sensor} value is not a number: {shorten(raw)}") from exc
    if not math.isfinite(value):
        raise FrameError(f"lines sensor {sensor} value is not finite: {shorten(raw)}")
    return value


def _name(raw: object, what: str) -> str:
    if not isinstance(raw, str | int) or isinstance(raw, bool) or not NAME.fullmatch(str(raw)):
        raise FrameError(f"lines {what} must be 1-64 of A-Z a-z 0-9 _ . : -, got {shorten(raw)}")
    return str(raw)


def _parse(line: str, device_id: str | None) -> tuple[str, dict[str, float]]:
    if line.startswith("{"):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FrameError(f"lines JSON does not parse ({exc}): {shorten(line)}") from exc
        if not isinstance(obj, dict):
            raise FrameError(f"lines JSON must be an object: {shorten(line)}")
        unit = obj.pop("unit", obj.pop("id", device_id))
        sensors = {_name(k, "sensor id"): _value(v, k) for k, v in obj.items()}
    else:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) not in (3, 4):
            raise FrameError(f"lines expects UnitID,SensorID,Value or a JSON object: {shorten(line)}")
        unit, sensor = parts[0], _name(parts[1], "sensor id")
        sensors = {sensor: _value(parts[2], sensor)}
    if unit is None:
        raise FrameError(f"lines reading has no unit id and none is known: {shorten(line)}")
    if not sensors:
        raise FrameError(f"lines reading has no sensor value: {shorten(line)}")
    return _name(unit, "unit id"), sensors


def decode(payload: bytes, *, received_at: datetime, device_id: str | None = None) -> list[Reading]:
    """One line → one `Reading`."""
    if len(payload) > MAX_LINE:
        raise FrameError(f"lines: a line longer than {MAX_LINE} bytes, cut after {MAX_LINE + 1} (a wrong baud rate, "
                         f"or no line ends?): {shorten(payload)}")
    try:
        line = payload.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise FrameError(f"lines payload is not UTF-8 text: {shorten(payload)}") from exc
    unit, sensors = _parse(line, device_id)
    total: dict[str, float | int] = {}
    extra: dict[str, float] = {}
    for sensor, value in sensors.items():
        if sensor in INTEGER_FIELDS:
            if not value.is_integer() or abs(value) > 2**53:
                raise FrameError(f"lines sensor {sensor} must be a whole number of Wh/varh: {shorten(value)}")
            total[sensor] = int(value)
        elif sensor in FIELDS:
            total[sensor] = value
        else:
            extra[sensor] = value
    return [Reading.build({"meter_id": f"{DRIVER}:{unit}", "driver": DRIVER, "ts": received_at,
                           "received_at": received_at, "total": total, "extra": extra})]
