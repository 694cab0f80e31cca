"""Japanese low-voltage smart meters over the B-route: ECHONET Lite frames (EOJ 0x028801) as the
Wi-SUN dongle hands them over in `ERXUDP` (ECHONET Lite spec part 2 ch. 3; Appendix "low-voltage
smart electric energy meter class"; EPC semantics as in kjmat/keilog and smdn/Smdn.Net.EchonetLite).

`EHD(1081) | TID(2) | SEOJ(3) | DEOJ(3) | ESV | OPC | {EPC PDC EDT}*OPC`. Responses (ESV 72 Get_Res,
73 INF, 52 Get_SNA) from the meter become readings; which EPC (`EPCS`) becomes which field, the
no-data sentinels and the meter's clock (Asia/Tokyo): docs/meters/broute.md.

D3 coefficient, D7 digits and E1 unit are scaling state per meter (`Scaling`), carried by the caller
(the pipeline keeps it in a changelogged table; `wattstream decode broute` across lines). Energy
before D3 and E1 are known is not guessed: it is left out and counted (`FrameResult.unscaled`).
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Final
from zoneinfo import ZoneInfo

from pipeline.errors import FrameError, UnknownField, shorten
from pipeline.models import Reading

DRIVER: Final = "broute"
DEVICE: Final = "meter"  # a meter's name where none is given (`broute:meter`)
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


@dataclass
class _Properties:
    """What one frame's properties add up to, filled by the EPC handlers (`EPCS`)."""

    scaling: Scaling
    values: dict[str, float | int] = field(default_factory=dict)
    phases: dict[str, dict[str, float]] = field(default_factory=dict)
    energies: list[tuple[str, int]] = field(default_factory=list)  # scaled once the frame's D3/E1 are known
    stamped: list[tuple[datetime, str, int]] = field(default_factory=list)  # (meter clock, field, raw count)


def _coefficient(edt: bytes, epc: int, acc: _Properties) -> None:
    acc.scaling = replace(acc.scaling, coefficient=_int(edt, 4, epc))


def _unit(edt: bytes, epc: int, acc: _Properties) -> None:
    unit = _int(edt, 1, epc)
    if unit not in UNITS:
        raise UnknownField(f"E1 unit code {unit:#04x} is not defined")
    acc.scaling = replace(acc.scaling, unit=unit)


def _digits(edt: bytes, epc: int, acc: _Properties) -> None:
    acc.scaling = replace(acc.scaling, digits=_int(edt, 1, epc))


def _instant_power_w(edt: bytes, epc: int, acc: _Properties) -> None:
    watts = _int(edt, 4, epc, signed=True)
    if watts not in POWER_SENTINELS:
        acc.values["power_w"] = float(watts)


def _instant_currents_a(edt: bytes, epc: int, acc: _Properties) -> None:
    r, t = _int(edt[:2], 2, epc, signed=True), _int(edt[2:], 2, epc, signed=True)
    for phase, raw in (("L1", r), ("L2", t)):
        if (amps := _current(raw)) is not None:
            acc.phases[phase] = {"current_a": amps}


def _cumulative_energy(edt: bytes, epc: int, acc: _Properties) -> None:
    raw = _int(edt, 4, epc)
    if raw != NO_DATA:
        acc.energies.append((ENERGY_FIELDS[epc], raw))


def _fixed_time_energy(edt: bytes, epc: int, acc: _Properties) -> None:
    if len(edt) != 11:
        raise UnknownField(f"EPC {epc:02X} must have 11 bytes, got {len(edt)}: {edt.hex()}")
    raw = int.from_bytes(edt[7:], "big")
    when = _stamp(edt)
    if raw != NO_DATA and when is not None:
        acc.stamped.append((when, ENERGY_FIELDS[epc], raw))


ENERGY_FIELDS: Final = MappingProxyType({0xE0: "energy_import_wh", 0xE3: "energy_export_wh",
                                         0xEA: "energy_import_wh", 0xEB: "energy_export_wh"})
# EPC → what its EDT means (the low-voltage smart meter class; the module docstring says each)
EPCS: Final[Mapping[int, Callable[[bytes, int, _Properties], None]]] = MappingProxyType({
    0xD3: _coefficient, 0xE1: _unit, 0xD7: _digits,
    0xE7: _instant_power_w, 0xE8: _instant_currents_a,
    0xE0: _cumulative_energy, 0xE3: _cumulative_energy,
    0xEA: _fixed_time_energy, 0xEB: _fixed_time_energy,
})


@dataclass(frozen=True)
class FrameResult:
    readings: list[Reading]
    scaling: Scaling
    unscaled: int  # energy values left out because D3/E1 were not known yet


def _binary(payload: bytes) -> bytes:
    """The frame's bytes: as the dongle's ERXUDP gives them, or as hex text (logs, `wattstream decode`)."""
    if payload[:2] == EHD:
        return payload
    try:
        return binascii.unhexlify(b"".join(payload.split()))
    except (binascii.Error, ValueError):
        return payload  # `parse_frame` says what is wrong with it


def decode(payload: bytes, *, received_at: datetime, device_id: str | None, scaling: Scaling) -> FrameResult:
    """One ECHONET Lite frame (binary or hex) → readings (zero or more) and the meter's updated scaling."""
    frame = parse_frame(_binary(payload))
    if frame.seoj != SMART_METER or frame.esv not in RESPONSES:
        return FrameResult([], scaling, 0)  # requests, node-profile notices (D5): nothing to record
    if not device_id:
        raise FrameError("broute frame without a device id")
    acc = _Properties(scaling)
    for epc, edt in frame.properties:
        if not edt:  # Get_SNA or an empty answer: not available; a meter without D3 means 1
            if epc == 0xD3:
                acc.scaling = replace(acc.scaling, coefficient=1)
            continue
        if (handler := EPCS.get(epc)) is not None:
            handler(edt, epc, acc)
    scaling, values, phases, stamped = acc.scaling, acc.values, acc.phases, acc.stamped
    # scaling first (D3/E1 may come in the same frame as E0), then the energies
    unscaled = 0
    for name, raw in acc.energies:
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
    return FrameResult(readings, scaling, unscaled)
