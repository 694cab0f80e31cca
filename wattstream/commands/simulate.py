"""`wattstream simulate`: simulated meters (IAMMETER, Acrel, EVN, Shelly, OpenDTU, DSMR) and a PV site with a
car, publishing to MQTT (`simulators.meters`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pipeline.settings import Settings
from wattstream.commands.common import add_command
from wattstream.signals import block_until_signal

if TYPE_CHECKING:
    from wattstream.commands.common import Subparsers


def add_parser(sub: Subparsers) -> None:
    simulate = add_command(sub, "simulate", help="simulated meters and a PV site with a car, publishing to MQTT",
                           settings=("mqtt", "worker.log_level"), run=run_simulate)
    simulate.add_argument("--interval", type=float, default=2.0, help="seconds between payloads")


def run_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from simulators.meters import run_simulator

    block_until_signal(lambda: run_simulator(settings.mqtt, args.interval))
    return 0
