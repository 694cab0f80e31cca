"""Simulated devices of the `mqtt_json` presets, publishing as the real ones do: a Shelly Pro 3EM (JSON
status of `em:0` and `emdata:0` under its device id) and a Hoymiles inverter behind OpenDTU (one number
per topic under `solar/<serial>/`)."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from datetime import datetime

Message = tuple[str, bytes]


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


MQTT_JSON_METERS_TOML = '[[mqtt_json]]\npreset = "shelly_pro_3em"\n\n[[mqtt_json]]\npreset = "opendtu"\n'

