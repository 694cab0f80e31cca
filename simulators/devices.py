"""More simulated devices, publishing as the real ones do: an Acrel ADW300/ADW310 (`json-v2/analog`
message pairs), a Shelly Pro 3EM (JSON status of `em:0` and `emdata:0` under its device id) and a
Hoymiles inverter behind OpenDTU (one number per topic under `solar/<serial>/`), both through
`mqtt_json` presets; a Dutch DSMR 5 meter behind an ESP P1 reader that publishes each raw telegram on
`dsmr/<device>`."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from dsmr_parser.parsers import TelegramParser

Message = tuple[str, bytes]


class Device(Protocol):
    """What each device here does: its messages for a cycle of `dt_s` seconds."""

    def messages(self, now: datetime, dt_s: float) -> list[Message]: ...


@dataclass
class SimulatedAdw300:
    """An Acrel ADW300 (three phase) or ADW310 (single phase) sending its values as two `json-v2/analog`
    messages per cycle (ids 0-35, then 0 + 36-72), values in kW/kWh as the device does."""

    device: str
    phases: int
    seed: int = 7
    topic: str = "platform/acrel/meter/json-v2/analog/0000"
    import_kwh: float = 1234.5

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def messages(self, now: datetime, dt_s: float) -> list[Message]:
        tp = int(now.timestamp() * 1000)
        kw = [round(0.3 + 0.2 * math.sin(now.timestamp() / 300 + i) + self._rng.gauss(0, 0.02), 3)
              for i in range(self.phases)]
        self.import_kwh += sum(kw) * dt_s / 3600
        volts = [round(230 + self._rng.gauss(0, 1), 1) for _ in range(self.phases)]
        first: dict[int, object] = {0: self.device, 13: round(sum(kw), 3), 25: 0.97,
                                    26: round(50 + self._rng.gauss(0, 0.02), 2), 27: 22,
                                    28: round(self.import_kwh, 2), 29: 0.0, 34: 1, 35: 1}
        for i in range(self.phases):
            first |= {1 + i: volts[i], 7 + i: round(kw[i] * 1000 / volts[i] / 0.97, 2), 10 + i: kw[i], 22 + i: 0.97}
        second: dict[int, object] = {0: self.device, 36: round(31 + self._rng.gauss(0, 0.3), 1), 41: 0}
        bodies = [{"data": [{"tp": tp, "point": [{"id": k, "val": v} for k, v in points.items()]}]}
                  for points in (first, second)]
        return [(self.topic, json.dumps(body).encode()) for body in bodies]


@dataclass
class SimulatedShellyPro3em:
    device: str = "shellypro3em-c8f09e8a1b2c"
    seed: int = 31
    import_wh: list[float] = field(default_factory=lambda: [115973.75, 118809.52, 110844.76])
    export_wh: list[float] = field(default_factory=lambda: [0.0, 0.0, 1247.42])

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def messages(self, now: datetime, dt_s: float) -> list[Message]:
        em: dict[str, object] = {"id": 0}
        for i, p in enumerate("abc"):
            power = round(150 + 120 * math.sin(now.timestamp() / 400 + i) + self._rng.gauss(0, 10), 1)
            voltage, pf = round(231 + self._rng.gauss(0, 1), 1), round(0.6 + 0.3 * self._rng.random(), 2)
            if power >= 0:
                self.import_wh[i] += power * dt_s / 3600
            else:
                self.export_wh[i] -= power * dt_s / 3600
            em |= {f"{p}_current": round(abs(power) / voltage / pf, 3), f"{p}_voltage": voltage,
                   f"{p}_act_power": power, f"{p}_aprt_power": round(abs(power) / pf, 1), f"{p}_pf": pf,
                   f"{p}_freq": 50.0}
        powers = [float(str(em[f"{p}_act_power"])) for p in "abc"]
        em |= {"n_current": None, "total_current": round(sum(float(str(em[f"{p}_current"])) for p in "abc"), 3),
               "total_act_power": round(sum(powers), 3),
               "total_aprt_power": round(sum(float(str(em[f"{p}_aprt_power"])) for p in "abc"), 3),
               "user_calibrated_phase": []}
        emdata: dict[str, object] = {"id": 0}
        for i, p in enumerate("abc"):
            emdata |= {f"{p}_total_act_energy": round(self.import_wh[i], 2),
                       f"{p}_total_act_ret_energy": round(self.export_wh[i], 2)}
        emdata |= {"total_act": round(sum(self.import_wh), 2), "total_act_ret": round(sum(self.export_wh), 2)}
        return [(f"{self.device}/status/em:0", json.dumps(em).encode()),
                (f"{self.device}/status/emdata:0", json.dumps(emdata).encode())]


@dataclass
class SimulatedOpenDtu:
    serial: str = "114182912345"
    peak_w: float = 600.0
    seed: int = 41
    yield_kwh: float = 1234.567
    yield_day_wh: float = 0.0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def messages(self, now: datetime, dt_s: float) -> list[Message]:
        dc = [max(0.0, self.peak_w / 2 * (0.7 + 0.2 * math.sin(now.timestamp() / 900 + i)) + self._rng.gauss(0, 5))
              for i in range(2)]
        ac = sum(dc) * 0.95
        self.yield_kwh += ac * dt_s / 3_600_000
        self.yield_day_wh += ac * dt_s / 3600
        voltage = 230 + self._rng.gauss(0, 1)
        values = {"0/power": f"{ac:.1f}", "0/yieldtotal": f"{self.yield_kwh:.3f}",
                  "0/yieldday": f"{self.yield_day_wh:.0f}", "0/voltage": f"{voltage:.1f}",
                  "0/current": f"{ac / voltage:.2f}", "0/frequency": "50.00",
                  "0/powerfactor": "1.000", "0/temperature": f"{35 + self._rng.gauss(0, 0.5):.1f}",
                  "1/power": f"{dc[0]:.1f}", "2/power": f"{dc[1]:.1f}"}
        return [(f"solar/{self.serial}/{suffix}", value.encode()) for suffix, value in values.items()]


@dataclass
class SimulatedP1:
    """A DSMR 5 meter with gas, its telegram (CRC16 included) published raw by an ESP reader."""

    device: str = "meterkast"
    equipment: str = "SIM0000000000001"
    seed: int = 51
    import_wh: list[float] = field(default_factory=lambda: [1_581_123.0, 1_435_706.0])
    gas_m3: float = 981.443

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._last = ""

    def messages(self, now: datetime, dt_s: float) -> list[Message]:
        """At most one telegram a second, as a DSMR 5 meter sends them (its clock has whole seconds)."""
        local = now.astimezone(ZoneInfo("Europe/Amsterdam"))
        clock = local.strftime("%y%m%d%H%M%S") + ("S" if local.dst() else "W")
        if clock == self._last:
            return []
        self._last = clock
        kw = [max(0.0, 0.15 + 0.1 * math.sin(now.timestamp() / 500 + i) + self._rng.gauss(0, 0.01)) for i in range(3)]
        self.import_wh[1] += sum(kw) * 1000 * dt_s / 3600
        self.gas_m3 += 0.0001 * dt_s
        lines = ["/ISk5\\2MT382-1000", "", "1-3:0.2.8(50)", f"0-0:1.0.0({clock})",
                 f"0-0:96.1.1({self.equipment.encode().hex().upper()})",
                 *(f"1-0:1.8.{t + 1}({self.import_wh[t] / 1000:010.3f}*kWh)" for t in range(2)),
                 "1-0:2.8.1(000000.000*kWh)", "1-0:2.8.2(000000.000*kWh)", "0-0:96.14.0(0002)",
                 f"1-0:1.7.0({sum(kw):06.3f}*kW)", "1-0:2.7.0(00.000*kW)",
                 *(f"1-0:{32 + 20 * i}.7.0({230 + self._rng.gauss(0, 1):05.1f}*V)" for i in range(3)),
                 *(f"1-0:{21 + 20 * i}.7.0({kw[i]:06.3f}*kW)" for i in range(3)),
                 "0-1:24.1.0(003)", f"0-1:96.1.0({b'GAS0001'.hex().upper()})",
                 f"0-1:24.2.1({clock})({self.gas_m3:09.3f}*m3)", "!"]
        text = "\r\n".join(lines)
        return [(f"dsmr/{self.device}", f"{text}{TelegramParser.crc16(text):04X}\r\n".encode())]


MQTT_JSON_METERS_TOML = '[[mqtt_json]]\npreset = "shelly_pro_3em"\n\n[[mqtt_json]]\npreset = "opendtu"\n'
