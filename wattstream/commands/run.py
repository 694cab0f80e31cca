"""`wattstream run`: the embedded default, everything on one machine without Docker (`wattstream.embedded`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pipeline.settings import Settings
from wattstream.commands.common import add_command

if TYPE_CHECKING:
    from wattstream.commands.common import Subparsers

# Its own and its worker's; the children get the rest of the environment, with the brokers' addresses set
SETTINGS = ("files", "influx", "worker", "windows", "meters_file")


def add_parser(sub: Subparsers) -> None:
    run = add_command(sub, "run", help="the embedded default (no Docker): everything in one command",
                      settings=SETTINGS, run=run_embedded_default,
                      description="The embedded default (no Docker): Kafka (Tansu) and MQTT brokers, simulated "
                      "meters, the bridges, the worker and the charger bridge on this machine; the readings go "
                      "to the daily files (or InfluxDB with WATTSTREAM_INFLUX_URL).")
    run.add_argument("--interval", type=float, default=2.0, help="seconds between simulated payloads")
    run.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    run.add_argument("--kafka-mb", type=float, default=256,
                     help="start a new embedded Kafka from a snapshot when Tansu holds more than this many MB")


def run_embedded_default(settings: Settings, args: argparse.Namespace) -> int:
    from wattstream.embedded.run import run_embedded

    settings.read_meters_file()  # a wrong meters file is said now, not by every child
    return run_embedded(settings, interval=args.interval, duration=args.duration, kafka_mb=args.kafka_mb)
