"""IAMMETER WEM3080 / WEM3162 / WEM3080T / WEM3046T / WEM3050T: the monitorjson payload.

Spec: IAMMETER/appstore docs/monitorjson-api.md (one JSON for HTTP, MQTT `device/<SN>/realtime`, TCP);
legacy lowercase `data`: lewei50/iammeter Tools/Local API-IAMMETER; see tests/frames/iammeter/README.md.
The shapes accepted (`Data`, `Datas` with or without the net-metering row, the legacy `data`,
`EA.Reactive`) and what each becomes: docs/meters/iammeter.md. Where the document and its samples
disagree: it says kvar for `EA.Reactive`, but its sample magnitudes (-119 beside 200 W loads) are var,
so the value is taken as var.

The meter has no clock: `ts` is the bridge's receive time. Energies arrive in kWh with up to three
decimals and become exact integer Wh (decimal arithmetic, no float rounding).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from pipeline.errors import FrameError, WattstreamError, shorten
from pipeline.models import MAX_INTEGER, PHASES, Phase, Reading

DRIVER: Final = "iammeter"

class _Number(str):
    """A JSON number with a fraction or exponent, as written (the exact parse): an energy becomes exact Wh
    by decimal arithmetic (and a JSON string is never taken for a number)."""

    __slots__ = ()


class _Inexact(WattstreamError):
    """The fast parse (JSON numbers as floats) cannot tell this energy's exact Wh: parse exactly."""


Number = _Number | float | int
Convert = Callable[[Number], float | int]
FAST_KWH = 1e9  # below this, a float's error in kWh x 1000 stays under 1e-3 Wh (< 2.3e-4)


def _float(value: Number) -> float:
    try:
        result = float(value)
    except OverflowError:  # an integer literal beyond any float
        result = math.inf
    if not math.isfinite(result):
        raise FrameError(f"iammeter value out of range: {shorten(value)}")
    return result


def _kilo_to_int(number: Number) -> int:
    """kWh → Wh, kvarh → varh, exact (half-even beyond the meter's three decimals).

    A float from the fast parse is rounded directly where that is certainly the exact result: its error
    against the written decimal, times 1000, is below 1e-3 under `FAST_KWH`, so only a value whose Wh lie
    near a half (more than three decimals, half-even decides) or a huge one needs the decimal text."""
    if type(number) is float:
        if not abs(number) < FAST_KWH:  # (inf and nan too)
            raise _Inexact
        wh = number * 1000
        rounded = round(wh)
        if abs(abs(wh - rounded) - 0.5) > 1e-3:
            return rounded
        raise _Inexact
    value = Decimal(number)
    if not value.is_finite() or abs(value) > MAX_INTEGER // 1000:
        raise FrameError(f"iammeter energy out of range: {shorten(value)}")
    return int((value * 1000).to_integral_value())


# Row index → (Reading field, conversion). monitorjson-api.md: "[voltage, current, activePower,
# importEnergy, exportEnergy, frequency, powerFactor]" in V, A, W, kWh, kWh, Hz, 1.
ROW: Final[tuple[tuple[str, Convert], ...]] = (
    ("voltage_v", _float),
    ("current_a", _float),
    ("power_w", _float),
    ("energy_import_wh", _kilo_to_int),
    ("energy_export_wh", _kilo_to_int),
    ("frequency_hz", _float),
    ("power_factor", _float),
)
# The NEM row's voltage is a reference and its current "not meaningful" (monitorjson-api.md).
NET_ROW_SKIP: Final = frozenset({"voltage_v", "current_a"})
# EA.Reactive row: [reactivePower, inductiveEnergy kvarh, capacitiveEnergy kvarh].
REACTIVE_ROW: Final[tuple[tuple[str, Convert], ...]] = (
    ("reactive_power_var", _float),
    ("reactive_energy_import_varh", _kilo_to_int),
    ("reactive_energy_export_varh", _kilo_to_int),
)
SUMMED: Final = ("power_w", "energy_import_wh", "energy_export_wh", "reactive_power_var",
                  "reactive_energy_import_varh", "reactive_energy_export_varh")
LEGACY_ROW_LEN: Final = 5  # lowercase `data`: V, A, W, import kWh, export kWh


def _reject_constant(name: str) -> _Number:
    raise FrameError(f"iammeter payload has a non-finite number {name}")


# Built once: `json.loads` with arguments builds a decoder per call.
_EXACT = json.JSONDecoder(parse_float=_Number, parse_constant=_reject_constant)
_FAST = json.JSONDecoder(parse_constant=_reject_constant)


def _parse(payload: bytes, exact: bool) -> dict[str, Any]:
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FrameError(f"iammeter payload is not UTF-8 text: {shorten(payload)}") from exc
    try:
        obj = (_EXACT if exact else _FAST).decode(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise FrameError(f"iammeter payload is not JSON ({exc}): {shorten(payload)}") from exc
    if not isinstance(obj, dict):
        raise FrameError(f"iammeter payload is not a JSON object: {shorten(payload)}")
    return obj


def _row(
    row: object, layout: Sequence[tuple[str, Convert]], where: str, min_len: int | None = None
) -> dict[str, float | int]:
    needed = len(layout) if min_len is None else min_len
    if not isinstance(row, list) or not needed <= len(row) <= len(layout):
        raise FrameError(f"iammeter {where} must be a list of {needed} numbers: {shorten(row)}")
    values: dict[str, float | int] = {}
    for (name, convert), value in zip(layout, row, strict=False):
        kind = type(value)
        if kind is not float and kind is not _Number and kind is not int:  # (a bool is not an int here)
            at = next(i for i, item in enumerate(row) if item is value)
            raise FrameError(f"iammeter {where}[{at}] is not a number: {shorten(value)}")
        values[name] = convert(value)
    return values


def _rows(payload: Mapping[str, Any], key: str) -> list[object]:
    rows = payload[key]
    if not isinstance(rows, list) or not rows:
        raise FrameError(f"iammeter '{key}' must be a non-empty list: {shorten(rows)}")
    return rows


def _phase_total(phases: Mapping[Phase, dict[str, float | int]]) -> dict[str, float | int]:
    """Normal-mode three-phase total: algebraic sums (energies exact as integers; powers rounded to
    6 decimals so that binary float noise does not show, e.g. 0.2 + 1.2 + 2.2 stays 3.6)."""
    rows = list(phases.values())
    total: dict[str, float | int] = {}
    for name in SUMMED:
        values = [row[name] for row in rows if name in row]
        if len(values) == len(rows):
            summed = sum(values)
            total[name] = summed if isinstance(summed, int) else round(summed, 6)
    if "frequency_hz" in rows[0]:
        total["frequency_hz"] = rows[0]["frequency_hz"]
    return total


def decode(payload: bytes, *, received_at: datetime, device_id: str | None = None) -> list[Reading]:
    """One monitorjson payload → one `Reading`. `device_id` is used when the payload has no `SN`.

    JSON numbers are parsed as floats first (three times faster than keeping their text); an energy whose
    exact Wh a float cannot tell (`_kilo_to_int`) makes the payload be parsed again, exactly."""
    try:
        return _decode(_parse(payload, exact=False), received_at, device_id)
    except _Inexact:
        return _decode(_parse(payload, exact=True), received_at, device_id)


def _decode(obj: dict[str, Any], received_at: datetime, device_id: str | None) -> list[Reading]:
    sn = obj.get("SN", device_id)
    if not isinstance(sn, str) or not sn.strip():
        raise FrameError(f"iammeter payload has no SN and no device id is known: {shorten(obj.get('SN'))}")

    phases: dict[Phase, dict[str, float | int]] = {}
    total: dict[str, float | int] = {}
    reactive = _reactive_rows(obj)
    if "Datas" in obj or ("Data" in obj and isinstance(obj["Data"], list) and obj["Data"]
                          and isinstance(obj["Data"][0], list)):
        key = "Datas" if "Datas" in obj else "Data"
        rows = _rows(obj, key)
        if len(rows) not in (3, 4):
            raise FrameError(f"iammeter '{key}' must have 3 phase rows (+1 NEM row), got {len(rows)}")
        for i, (phase, row) in enumerate(zip(PHASES, rows, strict=False)):
            phases[phase] = _row(row, ROW, f"{key}[{i}]")
            if i < len(reactive):
                phases[phase] |= _row(reactive[i], REACTIVE_ROW, f"EA.Reactive[{i}]")
        if len(rows) == 4:
            net = _row(rows[3], ROW, f"{key}[3]")
            total = {name: value for name, value in net.items() if name not in NET_ROW_SKIP}
            if len(reactive) == 4:
                total |= _row(reactive[3], REACTIVE_ROW, "EA.Reactive[3]")
        else:
            total = _phase_total(phases)
    elif "Data" in obj:
        total = _row(obj["Data"], ROW, "Data")
        if reactive:
            total |= _row(reactive[0], REACTIVE_ROW, "EA.Reactive[0]")
    elif "data" in obj:
        total = _row(obj["data"], ROW, "data", min_len=LEGACY_ROW_LEN)
    else:
        raise FrameError(f"iammeter payload has no 'Data', 'Datas' or 'data': keys {sorted(obj)[:10]}")

    return [Reading.build({
        "meter_id": f"{DRIVER}:{sn.strip()}",
        "driver": DRIVER,
        "ts": received_at,
        "received_at": received_at,
        "total": total,
        "phases": phases,
    })]


def _reactive_rows(obj: Mapping[str, Any]) -> list[object]:
    ea = obj.get("EA")
    if ea is None:
        return []
    if not isinstance(ea, dict) or "Reactive" not in ea:
        raise FrameError(f"iammeter 'EA' must be an object with 'Reactive': {shorten(ea)}")
    return _rows(ea, "Reactive")
