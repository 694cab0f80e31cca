"""Generates the recorded day profiles the surplus tests replay (`python -m tests.profiles.generate`).

Each day is what a house in Lower Austria with 9 kWp of PV on a June day records without a car: a
three-phase grid meter (`iammeter:GRID`, + import, - export) and the PV inverter's meter (`iammeter:PV`,
production counted as export), one reading each every 10 s from 04:00 to 20:00 UTC, as `Reading` JSON
lines (gzip). Seeded, so the files are reproducible; they are kept in git so a change of this script
shows up as a change of the data.

- `clear.jsonl.gz`: clear sky, base load with a fridge, two kettles.
- `clouds.jsonl.gz`: cumulus passing every few minutes all day (cloud shadows of 30 s to 4 min, the
  panels dropping to 20-45 % within ~15 s), same loads.
- `loads.jsonl.gz`: thin haze, a kettle, an oven at noon and a heat pump running 40 minutes twice.
"""

from __future__ import annotations

import gzip
import json
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

DAY = datetime(2025, 6, 21, tzinfo=UTC)
START, END, STEP = DAY + timedelta(hours=4), DAY + timedelta(hours=20), timedelta(seconds=10)
SUNRISE, SUNSET = 2.9, 19.0  # UTC hours, Vienna around the solstice
PEAK_W = 9000.0
HERE = Path(__file__).parent


def clear_sky(at: datetime) -> float:
    hour = (at - DAY).total_seconds() / 3600
    if not SUNRISE < hour < SUNSET:
        return 0.0
    return PEAK_W * math.sin(math.pi * (hour - SUNRISE) / (SUNSET - SUNRISE)) ** 1.3


def clouds(rng: random.Random, passing: bool) -> Iterator[float]:
    """Attenuation per step: 1 = clear. Passing cumulus: alternating clear gaps and shadows."""
    level, target, left = 1.0, 1.0, 0
    while True:
        if left <= 0:
            if not passing:
                target, left = 1.0, 10**9
            elif target < 1.0:
                target, left = 1.0, rng.randint(6, 40)  # 1-7 min clear
            else:
                target, left = rng.uniform(0.2, 0.45), rng.randint(3, 24)  # 30 s - 4 min shadow
        left -= 1
        level += (target - level) * 0.6  # the shadow edge takes a few steps
        yield level


def loads(rng: random.Random, appliances: list[tuple[float, float, float]]) -> Iterator[float]:
    """House consumption per step: base + fridge + noise + (start hour, minutes, W) appliances."""
    at = START
    while True:
        hour = (at - DAY).total_seconds() / 3600
        fridge = 90.0 if int(hour * 4) % 2 else 0.0
        watts = 260 + 60 * math.sin(hour) + fridge + rng.gauss(0, 25)
        for start, minutes, power in appliances:
            if start <= hour < start + minutes / 60:
                watts += power
        yield watts
        at += STEP


def readings(name: str, seed: int, passing: bool, haze: float,
             appliances: list[tuple[float, float, float]]) -> Iterator[dict[str, object]]:
    rng = random.Random(seed)
    sky, house = clouds(rng, passing), loads(rng, appliances)
    at = START
    while at < END:
        pv = clear_sky(at) * next(sky) * haze
        grid = next(house) - pv
        stamp = at.isoformat().replace("+00:00", "Z")
        for meter, power in (("iammeter:GRID", grid), ("iammeter:PV", -pv)):
            yield {"meter_id": meter, "driver": "iammeter", "ts": stamp, "received_at": stamp,
                   "total": {"power_w": round(power, 1)}}
        at += STEP


KETTLES = [(7.2, 3, 2000.0), (15.5, 3, 2000.0)]
DAYS = {
    "clear": (1, False, 1.0, KETTLES),
    "clouds": (2, True, 1.0, KETTLES),
    "loads": (3, False, 0.85, [*KETTLES, (10.0, 45, 2500.0), (13.0, 40, 2800.0), (9.5, 20, 3000.0)]),
}


def main() -> None:
    for name, (seed, passing, haze, appliances) in DAYS.items():
        lines = "".join(json.dumps(r, separators=(",", ":")) + "\n"
                        for r in readings(name, seed, passing, haze, appliances))
        (HERE / f"{name}.jsonl.gz").write_bytes(gzip.compress(lines.encode(), mtime=0))


if __name__ == "__main__":
    main()
