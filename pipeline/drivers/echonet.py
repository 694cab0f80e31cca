"""Japanese low-voltage smart meters over the B-route: ECHONET Lite frames (EOJ 0x028801) as the
Wi-SUN dongle hands them over in `ERXUDP` (ECHONET Lite spec part 2 ch. 3; Appendix "low-voltage
smart electric energy meter class"; EPC semantics as in kjmat/keilog and smdn/Smdn.Net.EchonetLite).

`EHD(1081) | TID(2) | SEOJ(3) | DEOJ(3) | ESV | OPC | {EPC PDC EDT}*OPC`. Responses (ESV 72 Get_Res,
73 INF, 52 Get_SNA) from the meter become a `Reading`:
- E7 instantaneous power → `power_w` (signed int32); E8 R/T currents (signed int16 * 0.1 A) → L1/L2
  `current_a` (the R and T lines of Japan's single-phase three-wire service);
- E0/E3 cumulative energy normal/reverse → `energy_import_wh`/`energy_export_wh` = raw * D3 * E1 unit
  (exact integer Wh); EA/EB fixed-time energy → the same fields, `ts` from their own timestamp;
- D3 coefficient, D7 digits and E1 unit are scaling state per meter (`Scaling`), carried by the caller
  (the pipeline keeps it in a changelogged table; `wattstream decode broute` across lines).
Energy before D3 and E1 are known is not guessed: it is left out and counted (`Decoded.unscaled`).
Sentinels (FFFFFFFE no data; 7FFE/7FFF/8000 for currents; 80000000/7FFFFFFF/7FFFFFFE for power) → None.
Meter clocks (EA/EB) are Asia/Tokyo.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Final
from zoneinfo import ZoneInfo

from pipeline.errors import FrameError, UnknownField, shorten
from pipeline.models import Reading

DRIVER: Final = "broute"
EHD: Final = bytes([0x10, 0x81])
SMART_METER: Final = bytes([0x02, 0x88, 0x01])
RESPONSES: Final = frozenset({0x72, 0x73, 0x52})  # Get_Res, INF, Get_SNA
METER_ZONE: Final = ZoneInfo("Asia/Tokyo")
NO_DATA: Final = 0xFFFFFFFE
POWER_SENTINELS: Final = frozenset({-0x80000000, 0x7FFFFFFF, 0x7FFFFFFE})
CURRENT_SENTINELS: Final = frozenset({0x7FFE, 0x7FFF, -0x8000})
# E1 code → kWh per unit (ECHONET Appendix; keilog `_accept`; yakumo tests reject 05)
UNITS: Final = MappingProxyType({
    0x00: Decimal(1), 0x01: Decimal("0.1"), 0x02: Decimal("0.01"), 0x03: Decimal("0.001"),
    0x04: Decimal("0.0001"), 0x0A: Decimal(10), 0x0B: Decimal(100), 0x0C: Decimal(1000), 0x0D: Decimal(10000),
})


@dataclass(frozen=True)
class Scaling:
    """What turns E0/E3/EA/EB counts into Wh: D3 (coefficient; 1 where the meter has none), E1 (unit
    code), D7 (effective digits, kept for the record)."""

    coefficient: int | None = None
    unit: int | None = None
    digits: int | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes | None) -> Scaling:
        return cls(**json.loads(data)) if data else cls()

    def wh(self, raw: int) -> int | None:
        if self.coefficient is None or self.unit is None:
            return None
        return int((Decimal(raw) * self.coefficient * UNITS[self.unit] * 1000).to_integral_value())


@dataclass(frozen=True)
class Frame:
    tid: int
    seoj: bytes
    deoj: bytes
    esv: int
    properties: tuple[tuple[int, bytes], ...]


CONTROLLER: Final = bytes([0x05, 0xFF, 0x01])
GET: Final = 0x62


def get_request(tid: int, epcs: tuple[int, ...]) -> bytes:
    """A Get (ESV 62) from the controller to the smart meter for `epcs` (hnw/go-smartmeter frame_test)."""
    return (EHD + (tid & 0xFFFF).to_bytes(2, "big") + CONTROLLER + SMART_METER + bytes([GET, len(epcs)])
            + b"".join(bytes([epc, 0]) for epc in epcs))


def parse_frame(data: bytes) -> Frame:
    if len(data) < 12 or data[:2] != EHD:
        raise FrameError(f"not an ECHONET Lite frame (EHD 1081): {shorten(data.hex())}")
    tid, seoj, deoj, esv, opc = int.from_bytes(data[2:4], "big"), data[4:7], data[7:10], data[10], data[11]
    pos, properties = 12, list[tuple[int, bytes]]()
    for _ in range(opc):
        if pos + 2 > len(data) or pos + 2 + data[pos + 1] > len(data):
            raise FrameError(f"ECHONET Lite frame truncated in property {len(properties) + 1} of {opc}")
        epc, pdc = data[pos], data[pos + 1]
        properties.append((epc, data[pos + 2: pos + 2 + pdc]))
        pos += 2 + pdc
    if pos != len(data):
        raise FrameError(f"{len(data) - pos} bytes after the last ECHONET Lite property")
    return Frame(tid, seoj, deoj, esv, tuple(properties))


def _int(edt: bytes, size: int, epc: int, signed: bool = False) -> int:
    if len(edt) != size:
        raise UnknownField(f"EPC {epc:02X} must have {size} bytes, got {len(edt)}: {edt.hex()}")
    return int.from_bytes(edt, "big", signed=signed)


def _current(raw: int) -> float | None:
    return None if raw in CURRENT_SENTINELS else raw / 10


def _stamp(edt: bytes) -> datetime | None:
    year = int.from_bytes(edt[0:2], "big")
    try:
        return datetime(year, edt[2], edt[3], edt[4], edt[5], edt[6], tzinfo=METER_ZONE)
    except ValueError:
        return None


@dataclass(frozen=True)
class Decoded:
    readings: list[Reading]
    scaling: Scaling
    unscaled: int  # energy values left out because D3/E1 were not known yet


def decode(payload: bytes, *, received_at: datetime, device_id: str | None, scaling: Scaling) -> Decoded:
    """One ECHONET Lite frame → readings (zero or more) and the meter's updated scaling."""
    frame = parse_frame(payload)
    if frame.seoj != SMART_METER or frame.esv not in RESPONSES:
        return Decoded([], scaling, 0)  # requests, node-profile notices (D5): nothing to record
    if not device_id:
        raise FrameError("broute frame without a device id")
    values: dict[str, float | int] = {}
    phases: dict[str, dict[str, float]] = {}
    stamped: list[tuple[datetime, str, int]] = []
    energies: list[tuple[str, int]] = []
    for epc, edt in frame.properties:
        if not edt:  # Get_SNA or an empty answer: not available; a meter without D3 means 1
            if epc == 0xD3:
                scaling = replace(scaling, coefficient=1)
            continue
        if epc == 0xD3:
            scaling = replace(scaling, coefficient=_int(edt, 4, epc))
        elif epc == 0xE1:
            unit = _int(edt, 1, epc)
            if unit not in UNITS:
                raise UnknownField(f"E1 unit code {unit:#04x} is not defined")
            scaling = replace(scaling, unit=unit)
        elif epc == 0xD7:
            scaling = replace(scaling, digits=_int(edt, 1, epc))
        elif epc == 0xE7:
            watts = _int(edt, 4, epc, signed=True)
            if watts not in POWER_SENTINELS:
                values["power_w"] = float(watts)
        elif epc == 0xE8:
            r, t = _int(edt[:2], 2, epc, signed=True), _int(edt[2:], 2, epc, signed=True)
            for phase, raw in (("L1", r), ("L2", t)):
                if (amps := _current(raw)) is not None:
                    phases[phase] = {"current_a": amps}
        elif epc in (0xE0, 0xE3):
            raw = _int(edt, 4, epc)
            if raw != NO_DATA:
                energies.append(("energy_import_wh" if epc == 0xE0 else "energy_export_wh", raw))
        elif epc in (0xEA, 0xEB):
            if len(edt) != 11:
                raise UnknownField(f"EPC {epc:02X} must have 11 bytes, got {len(edt)}: {edt.hex()}")
            raw = int.from_bytes(edt[7:], "big")
            when = _stamp(edt)
            if raw != NO_DATA and when is not None:
                stamped.append((when, "energy_import_wh" if epc == 0xEA else "energy_export_wh", raw))
    # scaling first (D3/E1 may come in the same frame as E0), then the energies
    unscaled = 0
    for name, raw in energies:
        if (wh := scaling.wh(raw)) is None:
            unscaled += 1
        else:
            values[name] = wh
    meter_id = f"{DRIVER}:{device_id}"
    readings = []
    if values or phases:
        readings.append(Reading.build({"meter_id": meter_id, "driver": DRIVER, "ts": received_at,
                                       "received_at": received_at, "total": values, "phases": phases}))
    for when, name, raw in stamped:
        if (wh := scaling.wh(raw)) is None:
            unscaled += 1
            continue
        readings.append(Reading.build({"meter_id": meter_id, "driver": DRIVER, "ts": when,
                                       "received_at": received_at, "total": {name: wh}}))
    return Decoded(readings, scaling, unscaled)
