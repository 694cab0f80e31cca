"""P1 ports of Dutch, Belgian and Luxembourg smart meters (DSMR 2.2-5.0, Fluvius eMUCS, Luxembourg
Smarty and other AES-128-GCM encrypted P1), parsed by the `dsmr-parser` library, which knows every
version's telegram layout and checks the CRC16; this module picks the layout and maps the result, and
decrypts an encrypted frame with the general-glo-ciphering EVN's meters use too (`dlms`).
docs/meters/dsmr.md says what a user sees.

A payload is one telegram: the text from `/` to `!CRC` as the meter sends it, or an encrypted frame
(general-glo-ciphering, first byte 0xDB) as bytes or hex. The key of an encrypted meter comes from the
meters file (`key`, by the frame's system title, the bridge's device id, or `*`) and is never logged.

Out of one telegram come the electricity meter's reading (`dsmr:<equipment id>`, `ts` the meter's clock,
its DST flag applied; exact Wh per tariff as `extra`, their sums as the Reading's energies; per phase
V, A and W, delivered minus returned) and one reading per M-Bus device that sent a value (gas, water,
heat: `dsmr:<equipment id>-gas`, with the device's own timestamp).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

from dsmr_parser import telegram_specifications as specs
from dsmr_parser.exceptions import InvalidChecksumError
from dsmr_parser.objects import CosemObject, MBusObject
from dsmr_parser.parsers import TelegramParser

from pipeline.drivers import dlms
from pipeline.drivers.config import ANY_METER
from pipeline.errors import ChecksumError, DecryptError, FrameError, shorten
from pipeline.models import Reading

DRIVER: Final = "dsmr"
ENCRYPTED: Final = dlms.GLO_CIPHERING  # a binary, encrypted telegram starts with it
# a telegram's layout: Belgian (version line 0-0:96.1.4), Luxembourg (equipment id 0-0:42.0.0), else its
# DSMR version line (1-3:0.2.8); none: DSMR 2.2 or 3 (the same objects)
MARKERS: Final = (("\n0-0:96.1.4(", "belgium"), ("\n0-0:42.0.0(", "luxembourg"))
VERSION: Final = re.compile(r"^1-3:0\.2\.8\((\d)\d\)", re.MULTILINE)
PARSERS: Final = MappingProxyType({
    "belgium": TelegramParser(specs.BELGIUM_FLUVIUS), "luxembourg": TelegramParser(specs.LUXEMBOURG_SMARTY),
    "5": TelegramParser(specs.V5), "4": TelegramParser(specs.V4), "3": TelegramParser(specs.V3),
})
EQUIPMENT: Final = ("EQUIPMENT_IDENTIFIER", "BELGIUM_EQUIPMENT_IDENTIFIER", "LUXEMBOURG_EQUIPMENT_IDENTIFIER")
UNITS: Final = MappingProxyType({"kWh": 1000, "Wh": 1, "kW": 1000, "W": 1, "V": 1, "A": 1})
# dsmr-parser's object name → (scope, Reading field, sign): signed sums (delivered - returned per phase)
VALUES: Final[Mapping[str, tuple[str, str, int]]] = MappingProxyType({
    "CURRENT_ELECTRICITY_USAGE": ("total", "power_w", 1), "CURRENT_ELECTRICITY_DELIVERY": ("total", "power_w", -1),
    **{f"INSTANTANEOUS_ACTIVE_POWER_L{n}_POSITIVE": (f"L{n}", "power_w", 1) for n in (1, 2, 3)},
    **{f"INSTANTANEOUS_ACTIVE_POWER_L{n}_NEGATIVE": (f"L{n}", "power_w", -1) for n in (1, 2, 3)},
    **{f"INSTANTANEOUS_VOLTAGE_L{n}": (f"L{n}", "voltage_v", 1) for n in (1, 2, 3)},
    **{f"INSTANTANEOUS_CURRENT_L{n}": (f"L{n}", "current_a", 1) for n in (1, 2, 3)},
    "ELECTRICITY_USED_TARIFF_1": ("extra", "energy_import_t1_wh", 1),
    "ELECTRICITY_USED_TARIFF_2": ("extra", "energy_import_t2_wh", 1),
    "ELECTRICITY_DELIVERED_TARIFF_1": ("extra", "energy_export_t1_wh", 1),
    "ELECTRICITY_DELIVERED_TARIFF_2": ("extra", "energy_export_t2_wh", 1),
    "ELECTRICITY_IMPORTED_TOTAL": ("total", "energy_import_wh", 1),
    "ELECTRICITY_EXPORTED_TOTAL": ("total", "energy_export_wh", 1),
    "BELGIUM_CURRENT_AVERAGE_DEMAND": ("extra", "average_demand_w", 1),  # the running quarter hour
    "BELGIUM_MAXIMUM_DEMAND_MONTH": ("extra", "peak_demand_month_w", 1),  # this month's highest quarter hour
})
TARIFF_SUMS: Final = MappingProxyType({"energy_import_wh": ("energy_import_t1_wh", "energy_import_t2_wh"),
                                       "energy_export_wh": ("energy_export_t1_wh", "energy_export_t2_wh")})
MBUS_KINDS: Final = MappingProxyType({3: "gas", 7: "water", 4: "heat", 12: "heat"})  # M-Bus device type

TELEGRAM: Final = re.compile(rb"/[^/]*?![0-9A-Fa-f]{0,4}\r?\n", re.DOTALL)  # no `/` inside a telegram
MAX_FRAME: Final = 2048  # an encrypted frame (a Smarty's is about 650 bytes)
MAX_TELEGRAM: Final = 8192  # DSMR 5 allows 1024 characters per line; a telegram is a few dozen lines


class TelegramFramer:
    """`feed(chunk)` → the complete telegrams in a byte stream (serial, TCP, stdin): text from `/` to `!`
    and its CRC, or an encrypted frame (0xDB, its system title, 0x82 and a two-byte length); whatever was
    read around and between them is left out; split reads are put together."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        self._buf += chunk
        while (frame := self._take()) is not None:
            yield frame
        if len(self._buf) > MAX_TELEGRAM:  # garbage without an end: keep only from the last start on
            del self._buf[:max(self._buf.rfind(b"/"), len(self._buf) - MAX_TELEGRAM)]

    def _take(self) -> bytes | None:
        while True:
            encrypted, text = self._buf.find(ENCRYPTED), self._buf.find(b"/")
            if encrypted < 0 or (0 <= text < encrypted and TELEGRAM.search(self._buf, text, encrypted)):
                found = TELEGRAM.search(self._buf)  # text telegrams are ASCII: one never spans a 0xDB
                if found is None:
                    return None
                frame, end = bytes(found[0]), found.end()
            else:  # an encrypted frame: 0xDB, 8, the system title, 0x82, the length of the rest
                head = encrypted + 10
                if len(self._buf) < head + 3:
                    return None
                if self._buf[encrypted + 1] != 8 or self._buf[head] != 0x82:  # not a frame after all
                    del self._buf[:encrypted + 1]
                    continue
                end = head + 3 + int.from_bytes(self._buf[head + 1:head + 3], "big")
                if end - encrypted > MAX_FRAME:  # no meter's frame is that long: a 0xDB by chance
                    del self._buf[:encrypted + 1]
                    continue
                if len(self._buf) < end:
                    return None
                frame = bytes(self._buf[encrypted:end])
            del self._buf[:end]
            return frame


def _telegram(payload: bytes, keys: Mapping[str, bytes], device_id: str | None) -> Any:
    """The parsed telegram (dsmr-parser's `Telegram`); an encrypted frame decrypted first."""
    frame = payload.lstrip()
    frame = frame if frame[:1] == bytes([ENCRYPTED]) else frame.rstrip()  # a binary frame ends where it ends
    if frame[:2].upper() == b"DB":  # hex of an encrypted frame
        try:
            frame = binascii.unhexlify(b"".join(frame.split()))
        except (binascii.Error, ValueError) as exc:
            raise FrameError(f"dsmr: not hex: {shorten(payload)}") from exc
    if frame[:1] == bytes([ENCRYPTED]):
        ciphered = dlms.parse_glo(frame)
        title = ciphered.system_title.hex().upper()
        key = keys.get(title) or keys.get((device_id or "").upper()) or keys.get(ANY_METER)
        if key is None:
            raise DecryptError(f"dsmr: no key for the encrypted meter with system title {title} "
                               "(add it to the meters file)")
        # the GCM tag is not checked (meters differ in their authentication key; Luxembourg publishes one
        # for all): the decrypted telegram's CRC16 is, as ESPHome's and dsmr-parser's readers do it
        frame = dlms.decrypt(ciphered, key)
        if frame[:1] != b"/":
            raise DecryptError(f"dsmr: the telegram of {title} does not decrypt with its key")
    try:
        text = frame.decode("ascii")
    except UnicodeDecodeError as exc:
        raise FrameError(f"dsmr: a telegram is ASCII text: {shorten(payload)}") from exc
    if not text.startswith("/") or "!" not in text:
        raise FrameError(f"dsmr: a telegram runs from '/' to '!': {shorten(payload)}")
    version = VERSION.search(text)
    layout = next((name for marker, name in MARKERS if marker in text), version[1] if version else "3")
    return _parse(PARSERS.get(layout, PARSERS["5"]), text + "\r\n", payload)


def _parse(parser: TelegramParser, data: str, payload: bytes) -> Any:
    try:
        return parser.parse(data, throw_ex=True)
    except InvalidChecksumError as exc:
        raise ChecksumError(f"dsmr: CRC16 does not match: {exc}") from exc
    except Exception as exc:  # the library's and dlms-cosem's own errors on a broken telegram
        raise FrameError(f"dsmr: {exc!r}: {shorten(payload)}") from exc


def _equipment(raw: object) -> str | None:
    """An equipment id as the meter sends it (hex of ASCII), readable where it is."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        text = bytes.fromhex(raw).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return raw
    return text if text.isalnum() else raw


def decode(payload: bytes, *, received_at: datetime, device_id: str | None = None,
           keys: Mapping[str, bytes] | None = None) -> list[Reading]:
    """One telegram → the electricity meter's reading and one per M-Bus device with a value."""
    telegram = _telegram(payload, keys or {}, device_id)
    return _readings({name: obj for name, obj in telegram}, received_at, device_id)


def _readings(objects: dict[str, Any], received_at: datetime, device_id: str | None) -> list[Reading]:
    meter = _equipment(next((objects[name].value for name in EQUIPMENT if name in objects), None)) or device_id
    if not meter:
        raise FrameError("dsmr: telegram without an equipment id and no device id is known")
    scopes: dict[str, dict[str, Decimal]] = {}
    for name, (scope, field, sign) in VALUES.items():
        obj = objects.get(name)
        if isinstance(obj, CosemObject | MBusObject) and isinstance(obj.value, Decimal):
            values = scopes.setdefault(scope, {})
            values[field] = values.get(field, Decimal(0)) + sign * obj.value * UNITS.get(obj.unit or "", 1)
    total, extra = scopes.pop("total", {}), scopes.pop("extra", {})
    for field, parts in TARIFF_SUMS.items():
        if field not in total and any(part in extra for part in parts):
            total[field] = sum((extra.get(part, Decimal(0)) for part in parts), Decimal(0))
    tariff = getattr(objects.get("ELECTRICITY_ACTIVE_TARIFF"), "value", None)
    if isinstance(tariff, str) and tariff.isdigit():
        extra["tariff"] = Decimal(tariff)
    if not (total or scopes or extra):
        raise FrameError(f"dsmr: the telegram of {meter} carries no electricity value")
    clock = getattr(objects.get("P1_MESSAGE_TIMESTAMP"), "value", None)
    out = [Reading.build({
        "meter_id": f"{DRIVER}:{meter}", "driver": DRIVER, "ts": clock or received_at, "received_at": received_at,
        "total": {k: int(v.to_integral_value()) if k.startswith("energy") else float(v) for k, v in total.items()},
        "phases": {p: {k: float(v) for k, v in values.items()} for p, values in scopes.items()},
        "extra": {k: float(v) for k, v in extra.items()}})]
    for device in objects.get("MBUS_DEVICES", ()):
        out += _mbus(meter, device, received_at)
    return out


def _mbus(meter: str, device: Any, received_at: datetime) -> list[Reading]:
    kind, readings = None, []
    for name, obj in device:
        if name.endswith("DEVICE_TYPE") and str(obj.value).isdigit():
            kind = MBUS_KINDS.get(int(obj.value))
        elif isinstance(obj, MBusObject) and isinstance(obj.value, Decimal) and obj.unit:
            readings.append((obj.datetime, obj.unit, obj.value))
    suffix = kind or f"mbus{device.channel_id}"
    return [Reading.build({"meter_id": f"{DRIVER}:{meter}-{suffix}", "driver": DRIVER, "ts": ts or received_at,
                           "received_at": received_at,
                           "extra": {"volume_m3" if unit == "m3" else f"reading_{unit.lower()}": float(value)}})
            for ts, unit, value in readings]
