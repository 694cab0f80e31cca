"""`wattstream charger`: `power.surplus` → the chargers of the meters file (`[[charger]]`), over MQTT; the
charge modes set over MQTT (Home Assistant) → Kafka (`bridges.charger`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pipeline.errors import ConfigError
from pipeline.settings import Settings
from wattstream.commands.common import add_command, run_once_kafka_answers

if TYPE_CHECKING:
    from wattstream.commands.common import Subparsers

SETTINGS = ("kafka", "mqtt", "meters_file", "publish.discovery_prefix", "worker.fetch_wait_ms", "worker.log_level")


def add_parser(sub: Subparsers) -> None:
    add_command(sub, "charger", help="drive the chargers of the meters file from power.surplus", settings=SETTINGS,
                run=run_charger)


def run_charger(settings: Settings, _args: argparse.Namespace) -> int:
    from bridges.charger import run_chargers

    chargers = settings.read_meters_file().charger
    if not chargers:
        raise ConfigError("no [[charger]] in the meters file (WATTSTREAM_METERS_FILE)")

    return run_once_kafka_answers(settings.kafka, lambda stop: run_chargers(settings, chargers, stop))
