"""Acrel ADW300 (three phase) / ADW310 (single phase) wireless meters: MQTT `json-v2/analog` payloads.

Spec: Acrel "ADW3xx mqtt protocol 2022.2.16.pdf" (committed in Zhihong0321/Eternalgy-EMS, abf9cc08),
see tests/frames/adw300/README.md. Topic `platform/<vendor>/meter/json-v2/analog/<group>`; payload
`{"data": [{"tp": <ms epoch>, "point": [{"id": n, "val": v}, ...]}]}`; the full set of values is split
over two messages (ids 0-35, then 0 + 36-72), each carrying the device serial as id 0.

Choices:
- `ts` = `tp` (the meter's clock, UTC milliseconds). One `Reading` per `data` entry.
- Values arrive as numbers or numeric strings (the spec types `val` as string); kW/kvar/kVA become
  W/var/VA and kWh/kvarh become exact integer Wh/varh (decimal arithmetic).
- Per-phase values go to `L1`..`L3` when the message carries any phase B or C quantity; otherwise
  (ADW310, single phase) phase A's values are the meter's `total`.
- Quantities without a `Reading` field go to `extra` with their unit in the name. Signal strength (id 27)
  is kept as sent: the spec says dBm but its sample value is +25, so its scale is unverified.
- Id 33 (SIM ICCID, a string) is ignored; an id not in the table goes to `extra` as `acrel_id_<n>`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Final, Literal

from pipeline.errors import FrameError, shorten
from pipeline.models import MAX_INTEGER, Reading

DRIVER: Final = "adw300"

Scope = Literal["total", "A", "B", "C", "extra"]
Kind = Literal["float", "int"]
K: Final = Decimal(1000)
ONE: Final = Decimal(1)

# id → (scope, field, scale to SI, kind). ADW3xx protocol PDF, "data ID" table.
POINTS: Final[Mapping[int, tuple[Scope, str, Decimal, Kind]]] = MappingProxyType({
    1: ("A", "voltage_v", ONE, "float"), 2: ("B", "voltage_v", ONE, "float"), 3: ("C", "voltage_v", ONE, "float"),
    4: ("extra", "voltage_l1_l2_v", ONE, "float"), 5: ("extra", "voltage_l2_l3_v", ONE, "float"),
    6: ("extra", "voltage_l3_l1_v", ONE, "float"),
    7: ("A", "current_a", ONE, "float"), 8: ("B", "current_a", ONE, "float"), 9: ("C", "current_a", ONE, "float"),
    10: ("A", "power_w", K, "float"), 11: ("B", "power_w", K, "float"), 12: ("C", "power_w", K, "float"),
    13: ("total", "power_w", K, "float"),
    14: ("A", "reactive_power_var", K, "float"), 15: ("B", "reactive_power_var", K, "float"),
    16: ("C", "reactive_power_var", K, "float"), 17: ("total", "reactive_power_var", K, "float"),
    18: ("A", "apparent_power_va", K, "float"), 19: ("B", "apparent_power_va", K, "float"),
    20: ("C", "apparent_power_va", K, "float"), 21: ("total", "apparent_power_va", K, "float"),
    22: ("A", "power_factor", ONE, "float"), 23: ("B", "power_factor", ONE, "float"),
    24: ("C", "power_factor", ONE, "float"), 25: ("total", "power_factor", ONE, "float"),
    26: ("total", "frequency_hz", ONE, "float"),
    27: ("extra", "signal_strength", ONE, "float"),
    28: ("total", "energy_import_wh", K, "int"), 29: ("total", "energy_export_wh", K, "int"),
    30: ("total", "reactive_energy_import_varh", K, "int"), 31: ("total", "reactive_energy_export_varh", K, "int"),
    32: ("extra", "active_demand_w", K, "float"),
    34: ("extra", "pt_ratio", ONE, "float"), 35: ("extra", "ct_ratio", ONE, "float"),
    36: ("extra", "temperature_l1_c", ONE, "float"), 37: ("extra", "temperature_l2_c", ONE, "float"),
    38: ("extra", "temperature_l3_c", ONE, "float"), 39: ("extra", "temperature_n_c", ONE, "float"),
    40: ("extra", "residual_current_a", ONE, "float"),
    41: ("extra", "di_status", ONE, "float"),
    42: ("A", "energy_import_wh", K, "int"), 43: ("A", "energy_export_wh", K, "int"),
    44: ("A", "reactive_energy_import_varh", K, "int"), 45: ("A", "reactive_energy_export_varh", K, "int"),
    46: ("B", "energy_import_wh", K, "int"), 47: ("B", "energy_export_wh", K, "int"),
    48: ("B", "reactive_energy_import_varh", K, "int"), 49: ("B", "reactive_energy_export_varh", K, "int"),
    50: ("C", "energy_import_wh", K, "int"), 51: ("C", "energy_export_wh", K, "int"),
    52: ("C", "reactive_energy_import_varh", K, "int"), 53: ("C", "reactive_energy_export_varh", K, "int"),
    54: ("extra", "thd_voltage_l1_pct", ONE, "float"), 55: ("extra", "thd_voltage_l2_pct", ONE, "float"),
    56: ("extra", "thd_voltage_l3_pct", ONE, "float"), 57: ("extra", "thd_current_l1_pct", ONE, "float"),
    58: ("extra", "thd_current_l2_pct", ONE, "float"), 59: ("extra", "thd_current_l3_pct", ONE, "float"),
    60: ("extra", "export_active_demand_w", K, "float"),
    61: ("extra", "reactive_demand_import_var", K, "float"), 62: ("extra", "reactive_demand_export_var", K, "float"),
    63: ("extra", "voltage_unbalance_pct", ONE, "float"), 64: ("extra", "current_unbalance_pct", ONE, "float"),
    65: ("extra", "energy_import_sharp_wh", K, "int"), 66: ("extra", "energy_import_peak_wh", K, "int"),
    67: ("extra", "energy_import_flat_wh", K, "int"), 68: ("extra", "energy_import_valley_wh", K, "int"),
    69: ("extra", "reactive_energy_q1_varh", K, "int"), 70: ("extra", "reactive_energy_q2_varh", K, "int"),
    71: ("extra", "reactive_energy_q3_varh", K, "int"), 72: ("extra", "reactive_energy_q4_varh", K, "int"),
})
DEVICE_ID: Final = 0
IGNORED: Final = frozenset({33})  # SIM ICCID (text)
PHASE_NAMES: Final = MappingProxyType({"A": "L1", "B": "L2", "C": "L3"})


def _parse(payload: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(payload.decode("utf-8-sig"), parse_float=Decimal)
    except UnicodeDecodeError as exc:
        raise FrameError(f"adw300 payload is not UTF-8 text: {shorten(payload)}") from exc
    except (json.JSONDecodeError, RecursionError) as exc:
        raise FrameError(f"adw300 payload is not JSON ({exc}): {shorten(payload)}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list) or not obj["data"]:
        raise FrameError(f"adw300 payload has no 'data' list: {shorten(payload)}")
    return obj


def _number(value: object, point_id: int) -> Decimal:
    if isinstance(value, bool):
        raise FrameError(f"adw300 id {point_id} value is not a number: {shorten(value)}")
    if isinstance(value, Decimal | int | str):
        try:
            number = Decimal(value)
        except InvalidOperation:
            pass
        else:
            if number.is_finite():
                return number
    raise FrameError(f"adw300 id {point_id} value is not a number: {shorten(value)}")


def _convert(number: Decimal, scale: Decimal, kind: Kind, point_id: int) -> float | int:
    scaled = number * scale
    if kind == "int":
        if abs(scaled) > MAX_INTEGER:
            raise FrameError(f"adw300 id {point_id} value out of range: {shorten(number)}")
        return int(scaled.to_integral_value())
    result = float(scaled)
    if not math.isfinite(result):
        raise FrameError(f"adw300 id {point_id} value out of range: {shorten(number)}")
    return result


def _entry(entry: object, device_id: str | None, received_at: datetime) -> Reading:
    if not isinstance(entry, dict) or not isinstance(entry.get("point"), list):
        raise FrameError(f"adw300 data entry has no 'point' list: {shorten(entry)}")
    tp = entry.get("tp")
    if isinstance(tp, bool) or not isinstance(tp, int) or not 0 < tp < 10**14:
        raise FrameError(f"adw300 'tp' is not a millisecond timestamp: {shorten(tp)}")
    scopes: dict[Scope, dict[str, float | int]] = {"total": {}, "A": {}, "B": {}, "C": {}, "extra": {}}
    for point in entry["point"]:
        if not isinstance(point, dict) or isinstance(point.get("id"), bool) or not isinstance(point.get("id"), int):
            raise FrameError(f"adw300 point is not {{'id': n, 'val': v}}: {shorten(point)}")
        point_id, value = point["id"], point.get("val")
        if point_id == DEVICE_ID:
            device_id = str(value).strip() or device_id
        elif point_id in POINTS:
            scope, name, scale, kind = POINTS[point_id]
            scopes[scope][name] = _convert(_number(value, point_id), scale, kind, point_id)
        elif point_id not in IGNORED:
            scopes["extra"][f"acrel_id_{point_id}"] = float(_number(value, point_id))
    if not device_id:
        raise FrameError("adw300 message has no device id (id 0) and none is known")

    three_phase = bool(scopes["B"] or scopes["C"])
    total = scopes["total"] if three_phase else {**scopes["A"], **scopes["total"]}
    phases = {PHASE_NAMES[p]: scopes[p] for p in ("A", "B", "C") if scopes[p]} if three_phase else {}
    return Reading.build({
        "meter_id": f"{DRIVER}:{device_id}", "driver": DRIVER,
        "ts": datetime.fromtimestamp(tp / 1000, UTC), "received_at": received_at,
        "total": total, "phases": phases, "extra": scopes["extra"],
    })


def decode(payload: bytes, *, received_at: datetime, device_id: str | None = None) -> list[Reading]:
    """One `json-v2/analog` message → one `Reading` per `data` entry."""
    return [_entry(entry, device_id, received_at) for entry in _parse(payload)["data"]]
