"""`wattstream bench`: throughput and latency of the pipeline beside a plain aiokafka baseline
(`wattstream.bench`: its own Kafka, MQTT and settings; none of the environment's)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pipeline.settings import Settings
from wattstream.commands.common import add_command

if TYPE_CHECKING:
    from wattstream.commands.common import Subparsers


def add_parser(sub: Subparsers) -> None:
    bench = add_command(sub, "bench", help="throughput and latency beside a plain aiokafka baseline",
                        settings=("worker.log_level",), run=run_bench)
    bench.add_argument("--count", type=int, default=50_000, help="payloads of the throughput run")
    bench.add_argument("--rate", type=float, help="payloads/s of the latency run (default: half the throughput, "
                       "at most 1000)")
    bench.add_argument("--profile", action="store_true", help="also record a py-spy profile of the worker")
    bench.add_argument("--meters", type=positive, default=100, help="how many simulated meters send the payloads")
    bench.add_argument("--burst", type=positive, help="produce the payloads this many at a time, as a live bridge "
                       "hands them over (small envelopes: the backlog a stopped worker finds)")
    bench.add_argument("--latency", action="store_true", help="instead: grid meter MQTT → charger MQTT through the "
                       "real bridge, worker and charger processes (--rate: grid payloads/s, default 1)")
    bench.add_argument("--others", type=count, default=0, help="--latency: meters publishing once a second besides")
    bench.add_argument("--seconds", type=float, default=60.0, help="--latency: how long to measure")


def count(text: str) -> int:
    number = int(text)
    if number < 0:
        raise argparse.ArgumentTypeError(f"{number}: at least 0")
    return number


def positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number}: at least 1")
    return number


def run_bench(_settings: Settings, args: argparse.Namespace) -> int:
    if args.latency:
        from wattstream.bench.latency import run_latency

        return run_latency(args.seconds, rate=args.rate or 1.0, others=args.others, profile=args.profile)
    from wattstream.bench.throughput import run_bench as throughput

    return throughput(args.count, rate=args.rate, profile=args.profile, meters=args.meters, burst=args.burst)
