"""`wattstream backtest [FILE]`: the windows or the surplus controller over a file of Readings (and
mode commands), as `pipeline.backtest` runs them; records on stdout, the summary and bad lines on stderr.
Exit status 1 if a line was bad, 2 for a configuration error."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.backtest import Backtest, SimBattery, open_input, read_records
from pipeline.meters_file import MetersFile
from pipeline.models import SurplusSignal
from pipeline.settings import Settings
from wattstream.commands.common import add_command

if TYPE_CHECKING:
    from wattstream.commands.common import Subparsers


def run_backtest(settings: Settings, args: argparse.Namespace) -> int:
    try:
        meters_file = MetersFile.load(Path(args.meters)) if args.meters else settings.read_meters_file()
        source = open_input(args.file)
    except (ValueError, OSError) as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.emit == "surplus" and not meters_file.sites():
        print("--emit surplus needs a meters file with a grid meter (role = \"grid\")", file=sys.stderr)
        return 2
    if args.plot and args.emit != "surplus":
        print("--plot draws the surplus decisions: it goes with --emit surplus", file=sys.stderr)
        return 2
    battery = SimBattery() if args.simulate_battery else None
    backtest = Backtest(meters_file, settings.windows.config(), simulate_charger=args.simulate_charger,
                        battery=battery)
    errors: list[str] = []
    decided: dict[str, list[SurplusSignal]] = {}
    try:
        with source:
            for record in backtest.run(read_records(source, errors), args.emit):
                sys.stdout.write(record.model_dump_json(exclude_none=True) + "\n")
                if args.plot and isinstance(record, SurplusSignal):
                    decided.setdefault(record.site, []).append(record)
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`
        sys.stderr.close()
        return 0
    except ValueError as exc:  # a mode command for a site or charger the meters file does not have
        print(exc, file=sys.stderr)
        return 2
    for error in errors:
        print(error, file=sys.stderr)
    for summary in backtest.summaries.values():
        print(summary.line(), file=sys.stderr)
    if args.plot:
        _plot(decided, Path(args.plot))
    if args.emit == "averages" and backtest.open_windows():
        print(f"{backtest.open_windows()} window(s) still open at the end of the input (not emitted)",
              file=sys.stderr)
    return 1 if errors else 0


def _plot(decided: dict[str, list[SurplusSignal]], path: Path) -> None:
    try:
        from pipeline.backtest_plot import plot
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'wattstream[plot]'") from None
    for site, signals in decided.items():  # one picture per site: FILE, or FILE-<site> for the second on
        target = path if len(decided) == 1 else path.with_stem(f"{path.stem}-{site}")
        plot(signals, target, f"site {site}: {signals[0].ts:%Y-%m-%d %H:%M} to {signals[-1].ts:%H:%M} UTC")
        print(f"site {site}: the day's picture is in {target}", file=sys.stderr)


def add_parser(sub: Subparsers) -> None:
    backtest = add_command(sub, "backtest", help="run the windows / surplus logic over a file of Readings",
                           settings=("meters_file", "windows", "worker.log_level"), run=run_backtest)
    backtest.add_argument("file", nargs="?", help="Reading JSON lines (.gz too), mode commands among them; "
                          "default stdin")
    backtest.add_argument("--emit", choices=["debounce", "averages", "surplus"], default="surplus",
                          help="what to print")
    backtest.add_argument("--meters", help="the meters file (default: WATTSTREAM_METERS_FILE)")
    backtest.add_argument("--simulate-charger", action="store_true",
                          help="a day recorded without a car: each site's chargers draw what was decided")
    backtest.add_argument("--simulate-battery", action="store_true",
                          help="a day recorded without a house battery: 10 kWh, 5 kW, 20 %% at the start")
    backtest.add_argument("--plot", metavar="FILE.png",
                          help="a picture of each site's day: grid, PV, battery, surplus, each charger (matplotlib)")
