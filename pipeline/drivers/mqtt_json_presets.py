"""Shipped `mqtt_json` mappings for devices many PV homes have (`preset = "<name>"` in a `[[mqtt_json]]`
entry). Each is a topic base (`{base}`, replaced by the entry's `topic`) and parts: a topic under it with
`fields` (Reading field → JSON path) or `values` (Reading field → topic suffix, one number per topic).
The captured payloads each is tested with, and where they come from: tests/frames/mqtt_json/README.md.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Final

KWH: Final = {"scale": 1000}  # kWh → Wh

# Shelly Pro 3EM (Gen2+ "status update over MQTT"; Shelly API docs, EM and EMData components):
# <device id>/status/em:0 powers, currents, voltages per phase (W, A, V) and in total;
# <device id>/status/emdata:0 energy counters per phase and in total (Wh)
_SHELLY_PRO_3EM: Final = {
    "base": "+",
    "parts": (
        {"topic": "{base}/status/em:0", "fields": {
            "power_w": "total_act_power", "apparent_power_va": "total_aprt_power", "current_a": "total_current",
            **{f"{phase}.{name}": {"path": f"{p}_{key}", "optional": True}
               for phase, p in (("L1", "a"), ("L2", "b"), ("L3", "c"))
               for name, key in (("power_w", "act_power"), ("apparent_power_va", "aprt_power"),
                                 ("voltage_v", "voltage"), ("current_a", "current"), ("power_factor", "pf"),
                                 ("frequency_hz", "freq"))},
        }},
        {"topic": "{base}/status/emdata:0", "fields": {
            "energy_import_wh": "total_act", "energy_export_wh": "total_act_ret",
            **{f"{phase}.{name}": {"path": f"{p}_{key}", "optional": True}
               for phase, p in (("L1", "a"), ("L2", "b"), ("L3", "c"))
               for name, key in (("energy_import_wh", "total_act_energy"),
                                 ("energy_export_wh", "total_act_ret_energy"))},
        }},
    ),
}

# Shelly 3EM (Gen1 MQTT: shellies/<id>/emeter/<i>/<value>, one number per topic; Shelly Gen1 API docs):
# power W (signed), current A, voltage V, pf, total / total_returned Wh
_SHELLY_3EM: Final = {
    "base": "shellies/+",
    "parts": ({"topic": "{base}", "values": {
        f"{phase}.{name}": f"emeter/{i}/{key}"
        for i, phase in enumerate(("L1", "L2", "L3"))
        for name, key in (("power_w", "power"), ("current_a", "current"), ("voltage_v", "voltage"),
                          ("power_factor", "pf"), ("energy_import_wh", "total"), ("energy_export_wh", "total_returned"))
    }},),
}

# Tasmota with the Smart Meter Interface (tele/<topic>/SENSOR every TelePeriod; Tasmota docs "Smart Meter
# Interface"): the script names the group (`*`: any) and the values; these are the names of the scripts in
# Tasmota's docs and of evcc's Tasmota template — Total_in / Total_out kWh, Power_curr (or Power_cur, the
# MT681 script's) W, negative: export. Scripts with other names override them in the meters file. `Time` is
# the device's local time without a zone: the receive time is used instead (set `ts` and `tz` to use it).
_TASMOTA_SML: Final = {
    "base": "tele/+",
    "parts": ({"topic": "{base}/SENSOR", "fields": {
        "power_w": "*.Power_curr|*.Power_cur",
        "energy_import_wh": {"path": "*.Total_in", **KWH},
        "energy_export_wh": {"path": "*.Total_out", **KWH, "optional": True},
    }},),
}

# OpenDTU (Hoymiles inverters; OpenDTU docs "MQTT topics"): solar/<serial>/0/<value> the inverter's AC side
# (power W, yieldtotal kWh, yieldday Wh, voltage V, current A, frequency Hz, powerfactor as a 0-1 ratio —
# the docs say %, the firmware divides by 1000 —, temperature °C), solar/<serial>/<n>/power the DC power of
# input n (W). An inverter's production is exported power: negative `power_w`, `energy_export_wh`.
_OPENDTU: Final = {
    "base": "solar/+",
    "parts": ({"topic": "{base}", "values": {
        "power_w": {"path": "0/power", "scale": -1},  # production: exported, so negative in our terms
        "energy_export_wh": {"path": "0/yieldtotal", **KWH},
        "voltage_v": "0/voltage", "current_a": "0/current", "frequency_hz": "0/frequency",
        "power_factor": "0/powerfactor", "extra.yield_day_wh": "0/yieldday", "extra.temperature_c": "0/temperature",
        **{f"extra.dc{n}_power_w": f"{n}/power" for n in range(1, 7)},
    }},),
}

# AhoyDTU (Hoymiles inverters; AhoyDTU user manual "MQTT" and its firmware's field table): inverter/<name>/
# ch0/<value> the AC side (P_AC W, YieldTotal kWh, YieldDay Wh, U_AC V, I_AC A, F_AC Hz, Temp °C), chN/P_DC
# the DC power of input N. PF_AC is left out: the manual shows it in %, newer firmware sends a 0-1 ratio.
_AHOYDTU: Final = {
    "base": "inverter/+",
    "parts": ({"topic": "{base}", "values": {
        "power_w": {"path": "ch0/P_AC", "scale": -1},
        "energy_export_wh": {"path": "ch0/YieldTotal", **KWH},
        "voltage_v": "ch0/U_AC", "current_a": "ch0/I_AC", "frequency_hz": "ch0/F_AC",
        "extra.yield_day_wh": "ch0/YieldDay", "extra.temperature_c": "ch0/Temp",
        **{f"extra.dc{n}_power_w": f"ch{n}/P_DC" for n in range(1, 7)},
    }},),
}

PRESETS: Final[MappingProxyType[str, dict[str, Any]]] = MappingProxyType({
    "shelly_pro_3em": _SHELLY_PRO_3EM,
    "shelly_3em": _SHELLY_3EM,
    "tasmota_sml": _TASMOTA_SML,
    "opendtu": _OPENDTU,
    "ahoydtu": _AHOYDTU,
})
