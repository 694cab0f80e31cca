"""`wattstream backtest --plot FILE.png`: one picture of a site's day — what a user tunes `[[site]]` with.

Top: grid (+ import), PV, house battery (+ charging) and the surplus the controller saw (averaged).
Middle: what each charger was allowed to draw, its starts (▲) and stops (▼). Bottom: the battery's state of
charge and each charger's mode. Needs matplotlib (`pip install 'wattstream[plot]'`); nothing else of
wattstream imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

from pipeline.models import MODES, SurplusSignal

LEVELS = {mode: level for level, mode in enumerate(MODES)}  # a mode's height in the picture


def plot(signals: Sequence[SurplusSignal], path: Path, title: str) -> None:
    """Write the picture of one site's decisions (in order) to `path` (PNG, or what its suffix says)."""
    import matplotlib  # optional (the `plot` extra): imported only when a picture is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = [s.ts for s in signals]
    figure, (power, chargers, states) = plt.subplots(3, 1, sharex=True, figsize=(14, 9),
                                                     gridspec_kw={"height_ratios": [3, 2, 1.3]})
    power.plot(ts, [s.grid_w for s in signals], label="grid (+ import)", linewidth=0.8, color="tab:red")
    if any(s.pv_w is not None for s in signals):
        power.plot(ts, [s.pv_w for s in signals], label="PV", linewidth=0.8, color="tab:orange")
    if any(s.battery_w is not None for s in signals):
        power.plot(ts, [s.battery_w for s in signals], label="battery (+ charging)", linewidth=0.8, color="tab:green")
    power.plot(ts, [s.surplus_w for s in signals], label="surplus (averaged)", linewidth=1.2, color="tab:blue")
    power.axhline(0, color="grey", linewidth=0.5)
    power.set_ylabel("W")
    power.legend(loc="upper left", fontsize="small")
    names = sorted({name for s in signals for name in s.chargers})
    for name in names:
        decided = [s.chargers[name].power_w if name in s.chargers else 0.0 for s in signals]
        line, = chargers.step(ts, decided, where="post", label=name, linewidth=1.0)
        for a, b in pairwise(signals):
            before, after = a.chargers.get(name), b.chargers.get(name)
            if before is not None and after is not None and before.charge != after.charge:
                chargers.plot(b.ts, after.power_w if after.charge else before.power_w,
                              marker="^" if after.charge else "v", color=line.get_color(), markersize=7)
    chargers.set_ylabel("allowed W")
    if names:
        chargers.legend(loc="upper left", fontsize="small")
    if any(s.battery_soc is not None for s in signals):
        states.plot(ts, [s.battery_soc for s in signals], color="tab:green", label="battery SoC %")
        states.set_ylim(0, 100)
        states.set_ylabel("SoC %")
        states.legend(loc="upper left", fontsize="small")
    modes = states.twinx()
    for name in names:
        modes.step(ts, [LEVELS[s.chargers[name].mode] if name in s.chargers else None for s in signals],
                   where="post", linestyle="--", linewidth=0.8, label=f"{name} mode")
    modes.set_yticks(list(LEVELS.values()), list(LEVELS))
    modes.set_ylim(-0.5, len(LEVELS) - 0.5)
    figure.suptitle(title)
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
