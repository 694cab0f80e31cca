"""`wattstream` — the one entry point. Builds the settings from the environment and runs the subcommand
(only the benchmark's worker process builds its own).

    wattstream run                 the embedded default: brokers, simulated meters, bridge, worker, files
    wattstream worker              the Faust worker (decode, sinks)
    wattstream bridge mqtt         MQTT → Kafka
    wattstream bridge serial --port P   serial line sensors → Kafka
    wattstream bridge p1 --port P       a DSMR P1 port (serial, or tcp://HOST:PORT of a network dongle) → Kafka
    wattstream bridge broute --port P   Wi-SUN dongle (B-route meter) → Kafka
    wattstream charger             power.surplus → the chargers of the meters file, over MQTT
    wattstream publish             meter.readings → MQTT (EVN-style JSON, Reading JSON, Home Assistant discovery)
    wattstream simulate            simulated meters (IAMMETER, Acrel, EVN, Shelly, OpenDTU, DSMR) and a PV site, on MQTT
    wattstream decode DRIVER       payloads on stdin → Reading JSON lines on stdout
    wattstream backtest [FILE]     the windows / surplus logic over Readings → JSON
    wattstream replay [--since T]  what Kafka holds of the worker's outputs → InfluxDB again
    wattstream bench               throughput/latency of the pipeline beside a plain aiokafka baseline

`wattstream COMMAND --help` lists its options and the settings (WATTSTREAM_* variables) it reads.
A configuration error (a setting, the meters file) is said in one line; the exit status is then 2.
"""

from __future__ import annotations

import signal

# USR1 toggles debug logging in every command, once it has set its handler; until then (imports take a
# few seconds) it would end the process, as `wattstream run` sends it to all its children
signal.signal(signal.SIGUSR1, signal.SIG_IGN)

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from importlib.metadata import PackageNotFoundError, version  # noqa: E402

from pipeline.errors import ConfigError  # noqa: E402
from pipeline.settings import Settings, load_settings  # noqa: E402
from wattstream.commands import (  # noqa: E402
    backtest,
    bench,
    bridge,
    charger,
    decode,
    publish,
    replay,
    run,
    simulate,
    worker,
)
from wattstream.commands.common import Run  # noqa: E402

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
COMMANDS = (run, worker, bridge, charger, publish, simulate, decode, backtest, replay, bench)


def _version() -> str:
    try:
        return version("wattstream")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wattstream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"wattstream {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def _logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.worker.log_level.upper(), format=LOG_FORMAT)
    logging.getLogger(__name__).debug("settings: %s", settings)  # SecretStr values print masked
    if settings.worker.log_level != "debug":  # aiokafka logs every retry while Kafka is away
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    chosen: argparse.ArgumentParser = args.parser
    if extra:  # said by the subcommand's parser (with its usage), not the top one
        chosen.error(f"unrecognized arguments: {' '.join(extra)}")
    # dsmr-parser logs every bad telegram line before it raises; the dsmr driver turns that into a dead letter
    logging.getLogger("dsmr_parser").setLevel(logging.CRITICAL)
    command: Run = args.run
    try:
        settings = load_settings()
        if args.logs:
            _logging(settings)
        return command(settings, args)
    except ConfigError as exc:  # one line, no traceback: what to mend is all it says
        print(f"{chosen.prog}: {' '.join(str(exc).splitlines())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
