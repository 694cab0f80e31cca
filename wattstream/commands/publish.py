"""`wattstream publish`: `meter.readings` → MQTT (EVN-style JSON, Reading JSON, Home Assistant discovery;
`bridges.publish`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pipeline.settings import Settings
from wattstream.commands.common import add_command, run_once_kafka_answers

if TYPE_CHECKING:
    from wattstream.commands.common import Subparsers

SETTINGS = ("kafka", "mqtt", "publish", "meters_file", "worker.fetch_wait_ms", "worker.log_level")


def add_parser(sub: Subparsers) -> None:
    add_command(sub, "publish", help="republish readings on MQTT, with Home Assistant discovery", settings=SETTINGS,
                run=run_publish)


def run_publish(settings: Settings, _args: argparse.Namespace) -> int:
    from bridges.publish import run_publish as publish

    meters_file = settings.read_meters_file()  # a wrong meters file is said now, before anything starts

    return run_once_kafka_answers(settings.kafka, lambda stop: publish(settings, meters_file, stop))
