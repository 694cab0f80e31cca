"""`wattstream worker`: the Faust worker (decode, windows, surplus, sinks). Started before Kafka is up, it
waits for Kafka (saying so) before Faust starts; Faust handles the signals from then on
(`pipeline.worker`: INT/TERM/HUP stop, USR1 toggles debug logging, USR2 writes the stacks)."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from pipeline.settings import Settings
from wattstream.commands.common import add_command, kafka_reachable
from wattstream.signals import run_until_signal

if TYPE_CHECKING:
    from wattstream.commands.common import Subparsers

SETTINGS = ("kafka", "influx", "files", "worker", "windows", "meters_file")


def add_parser(sub: Subparsers) -> None:
    add_command(sub, "worker", help="the Faust worker", settings=SETTINGS, run=run_worker,
                description="The Faust worker: decodes the raw topics, windows, decides the surplus, writes the "
                "sinks (InfluxDB when WATTSTREAM_INFLUX_URL is set, else the daily files).")


def run_worker(settings: Settings, _args: argparse.Namespace) -> int:
    meters_file = settings.read_meters_file()  # a wrong meters file is said now, before anything starts
    settings.worker_datadir.mkdir(parents=True, exist_ok=True)
    if settings.worker.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.worker.metrics_port)  # a daemon thread: /metrics (pipeline.health)
    if not run_until_signal(lambda stop: kafka_reachable(settings.kafka, stop)):
        return 0  # stopped while it waited
    from pipeline.app import create_app
    from pipeline.worker import run_worker as run

    asyncio.set_event_loop(asyncio.new_event_loop())  # Faust runs on the current loop; the wait closed its own
    run(create_app(settings, meters_file=meters_file), settings.worker.log_level)
    return 0
