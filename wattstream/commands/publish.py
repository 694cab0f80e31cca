"""`wattstream publish`: `meter.readings` → MQTT (EVN-style JSON, Reading JSON, Home Assistant discovery;
`bridges.publish`)."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from pipeline.settings import Settings
from wattstream.commands.common import add_command, kafka_reachable
from wattstream.signals import run_until_signal

if TYPE_CHECKING:
    from wattstream.commands.common import Subparsers

SETTINGS = ("kafka", "mqtt", "publish", "meters_file", "worker.fetch_wait_ms", "worker.log_level")


def add_parser(sub: Subparsers) -> None:
    add_command(sub, "publish", help="republish readings on MQTT, with Home Assistant discovery", settings=SETTINGS,
                run=run_publish)


def run_publish(settings: Settings, _args: argparse.Namespace) -> int:
    from bridges.publish import run_publish as publish

    settings.read_meters_file()  # a wrong meters file is said now, before anything starts

    async def main(stop: asyncio.Event) -> None:
        if await kafka_reachable(settings.kafka, stop):
            await publish(settings, stop)

    run_until_signal(main)
    return 0
