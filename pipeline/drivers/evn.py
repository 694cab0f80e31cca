"""Austrian smart meters on the P1 customer interface (EVN/Netz NÖ: Sagemcom T210-D, S210; Kaifa
M110, MA309; also TINETZ/VKW/Salzburg Kaifa layouts): M-Bus long frames → general-glo-ciphering
(AES-128-GCM) → data-notification → `Reading`. Sources: tests/frames/evn/README.md.

The ESP8266 bridge publishes the raw bytes on `sensors/smartmeter`: hex text (any case, spaces allowed)
or the raw binary frames are both accepted. `decode` takes one whole telegram per message;
`decode_stream` carries an incomplete telegram over to the next message (the worker keeps it per origin).
The meter is named by its system title (`evn:5341475905E990F3`), known before decryption, so the key
can be looked up by it; keys come from the meters file (`device` = system title). Which OBIS code
becomes which field, the clock and what is refused: docs/meters/evn.md.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Final, Literal
from zoneinfo import ZoneInfo

from pipeline.drivers import dlms, mbus
from pipeline.drivers.config import ANY_METER
from pipeline.errors import DecryptError, FrameError, shorten
from pipeline.models import Reading

DRIVER: Final = "evn"
METER_ZONE: Final = ZoneInfo("Europe/Vienna")

Scope = Literal["total", "L1", "L2", "L3", "in", "out"]
# OBIS (A.B.C.D.E.F) → (scope, field, integer?). IEC 62056-61 / Netz NÖ brochure p. 7.
OBIS: Final[Mapping[bytes, tuple[Scope, str, bool]]] = MappingProxyType({
    bytes([1, 0, 1, 8, 0, 255]): ("total", "energy_import_wh", True),
    bytes([1, 0, 2, 8, 0, 255]): ("total", "energy_export_wh", True),
    bytes([1, 0, 3, 8, 0, 255]): ("total", "reactive_energy_import_varh", True),
    bytes([1, 0, 4, 8, 0, 255]): ("total", "reactive_energy_export_varh", True),
    bytes([1, 0, 1, 7, 0, 255]): ("in", "power_w", False),
    bytes([1, 0, 2, 7, 0, 255]): ("out", "power_w", False),
    bytes([1, 0, 32, 7, 0, 255]): ("L1", "voltage_v", False),
    bytes([1, 0, 52, 7, 0, 255]): ("L2", "voltage_v", False),
    bytes([1, 0, 72, 7, 0, 255]): ("L3", "voltage_v", False),
    bytes([1, 0, 31, 7, 0, 255]): ("L1", "current_a", False),
    bytes([1, 0, 51, 7, 0, 255]): ("L2", "current_a", False),
    bytes([1, 0, 71, 7, 0, 255]): ("L3", "current_a", False),
    bytes([1, 0, 13, 7, 0, 255]): ("total", "power_factor", False),
    bytes([1, 0, 14, 7, 0, 255]): ("total", "frequency_hz", False),
})
CLOCK_OBIS: Final = bytes([0, 0, 1, 0, 0, 255])
HEX: Final = re.compile(rb"[0-9A-Fa-f\s]+")


def _bytes(payload: bytes) -> bytes:
    if not HEX.fullmatch(payload):
        if payload[:1] == bytes([mbus.START]):
            return payload
        raise FrameError(f"evn payload is neither hex text nor M-Bus bytes: {shorten(payload)}")
    try:
        return binascii.unhexlify(b"".join(payload.split()))
    except binascii.Error as exc:
        raise FrameError(f"evn payload is not whole hex bytes: {shorten(payload)}") from exc


def _registers(body: dlms.Data) -> tuple[dict[bytes, tuple[int, int]], bytes | None]:
    """(OBIS → (raw value, scaler)), clock register — from the flat list EVN sends
    (`OBIS, value, {scaler, unit}, ...`) or the nested structures of TINETZ/VKW (`{OBIS, value[, {s, u}]}`)."""
    if not isinstance(body, list):
        raise DecryptError("data-notification body is not a structure: wrong key or corrupted frame")
    registers: dict[bytes, tuple[int, int]] = {}
    clock = None

    def scaler_of(item: dlms.Data) -> int | None:
        if isinstance(item, list) and len(item) == 2 and all(isinstance(x, int) for x in item):
            return int(item[0])  # type: ignore[arg-type]
        return None

    def record(obis: bytes, value: dlms.Data, scaler: int | None) -> None:
        nonlocal clock
        if obis == CLOCK_OBIS and isinstance(value, bytes):
            clock = value
        elif isinstance(value, int) and obis in OBIS:
            registers[obis] = (value, scaler or 0)

    i = 0
    while i < len(body):
        item = body[i]
        if isinstance(item, list) and item and isinstance(item[0], bytes) and len(item[0]) == 6:
            record(item[0], item[1] if len(item) > 1 else None, scaler_of(item[2]) if len(item) > 2 else None)
            i += 1
        elif isinstance(item, bytes) and len(item) == 6 and i + 1 < len(body):
            scaler = scaler_of(body[i + 2]) if i + 2 < len(body) else None
            record(item, body[i + 1], scaler)
            i += 3 if scaler is not None else 2
        else:
            i += 1
    if not registers:
        raise DecryptError("data-notification carries no known register: wrong key or corrupted frame")
    return registers, clock


def decode(payload: bytes, *, received_at: datetime, device_id: str | None = None,
           keys: Mapping[str, bytes] | None = None) -> list[Reading]:
    """One telegram (hex or binary M-Bus frames) → one `Reading`. `keys`: system title (hex, upper
    case) → 16-byte key; `ANY_METER` for one key for all."""
    return [_telegram(mbus.parse_frames(_bytes(payload)), received_at, keys)]


MAX_PENDING: Final = 2048  # an incomplete telegram is at most two long frames


def decode_stream(payload: bytes, *, received_at: datetime, pending: bytes,
                  keys: Mapping[str, bytes] | None = None) -> tuple[list[Reading], bytes, str | None]:
    """For readers that split telegrams over messages: `pending` (the bytes of an incomplete telegram
    from earlier messages of the same origin) + this message → the complete telegrams' readings, the
    new pending bytes, and a notice when a message that starts a fresh frame replaced a stale
    incomplete one (a lost message: the telegram it belonged to is gone)."""
    new = _bytes(payload)
    try:
        return *_telegrams(pending + new, received_at, keys), None
    except FrameError as exc:
        if not pending:
            raise
        readings, rest = _telegrams(new, received_at, keys)  # the old part was stale or broken: start again
        return readings, rest, f"an incomplete telegram of {len(pending)} bytes dropped ({exc})"


def _telegrams(data: bytes, received_at: datetime, keys: Mapping[str, bytes] | None) -> tuple[list[Reading], bytes]:
    readings, frames, pos, start = [], [], 0, 0
    while pos < len(data):
        if data[pos] != mbus.START:
            raise FrameError(f"no M-Bus start byte at offset {pos}: {data[pos:pos + 8].hex()}")
        found = mbus.frame_at(data, pos)
        if found is None:
            break
        frame, pos = found
        frames.append(frame)
        if frame.last:
            readings.append(_telegram(frames, received_at, keys))
            frames, start = [], pos
    rest = data[start:]
    if len(rest) > MAX_PENDING:
        raise FrameError(f"{len(rest)} bytes without a complete telegram")
    return readings, rest


def _telegram(frames: list[mbus.Frame], received_at: datetime, keys: Mapping[str, bytes] | None) -> Reading:
    ciphered = dlms.parse_glo(mbus.reassemble(frames))
    title = ciphered.system_title.hex().upper()
    key = (keys or {}).get(title) or (keys or {}).get(ANY_METER)
    if key is None:
        raise DecryptError(f"no key for EVN meter with system title {title} (add it to the meters file)")
    notification = dlms.parse_notification(dlms.decrypt(ciphered, key))
    registers, clock_register = _registers(notification.body)

    scopes: dict[Scope, dict[str, float | int]] = {s: {} for s in ("total", "L1", "L2", "L3", "in", "out")}
    for obis, (raw, scaler) in registers.items():
        scope, name, integer = OBIS[obis]
        value = Decimal(raw).scaleb(scaler)
        scopes[scope][name] = int(value.to_integral_value()) if integer else float(value)
    total = scopes["total"]
    if "power_w" in scopes["in"] or "power_w" in scopes["out"]:
        total["power_w"] = float(scopes["in"].get("power_w", 0.0)) - float(scopes["out"].get("power_w", 0.0))
    three_phase = bool(scopes["L2"] or scopes["L3"])
    phases = {p: scopes[p] for p in ("L1", "L2", "L3") if scopes[p]} if three_phase else {}
    if not three_phase:
        total |= scopes["L1"]

    ts = None
    for raw_clock in (notification.clock, clock_register):
        if raw_clock and (ts := dlms.cosem_datetime(raw_clock, METER_ZONE)):
            break
    return Reading.build({
        "meter_id": f"{DRIVER}:{title}", "driver": DRIVER, "ts": ts or received_at,
        "received_at": received_at, "total": total, "phases": phases,
    })
