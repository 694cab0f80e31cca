"""`wattstream bridge mqtt | serial | p1 | broute`: an edge bridge, raw payloads → Kafka. The MQTT bridge
waits for Kafka before it subscribes (the broker keeps the messages meanwhile); the others read their
port from the start and spool what Kafka cannot take yet (`bridges.spool`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import ConfigError
from pipeline.settings import Settings
from wattstream.commands.common import add_command, run_once_kafka_answers
from wattstream.signals import run_until_signal

if TYPE_CHECKING:
    from bridges.kafka import RawProducer
    from bridges.spool import Spool
    from wattstream.commands.common import Subparsers

LOGS = "worker.log_level"


def add_parser(sub: Subparsers) -> None:
    bridge = sub.add_parser("bridge", help="an edge bridge", description="An edge bridge: raw payloads → Kafka.")
    kinds = bridge.add_subparsers(dest="kind", required=True, metavar="{mqtt,serial,p1,broute}")
    add_command(kinds, "mqtt", help="MQTT → Kafka: the meters file's meters and every driver's topics",
                settings=("kafka", "mqtt", "meters_file", LOGS), run=run_mqtt)
    serial = add_command(kinds, "serial", help="serial line sensors → Kafka", run=run_stream,
                         settings=("kafka", "files.dir", LOGS))
    p1 = add_command(kinds, "p1", help="a DSMR P1 port (serial, or tcp://HOST:PORT of a network dongle) → Kafka",
                     settings=("kafka", "files.dir", LOGS), run=run_stream)
    for parser in (serial, p1):
        parser.add_argument("--port", required=True, help="the port (/dev/ttyUSB0)" + (
            "; or tcp://HOST:PORT (a network P1 dongle serving the raw telegrams)" if parser is p1 else ""))
        parser.add_argument("--baud", type=int, default=115200, help="baud rate (DSMR 2.2/3: 9600)")
        parser.add_argument("--framing", choices=["8N1", "7E1"], default="8N1",
                            help="character format (DSMR 2.2/3: 7E1)")
        parser.add_argument("--device", help="the device name used as the Kafka key (default: the port)")
        _spool_arguments(parser)
    broute = add_command(kinds, "broute", help="Wi-SUN dongle (B-route meter) → Kafka", run=run_broute,
                         settings=("kafka", "broute", "files.dir", LOGS))
    broute.add_argument("--port", required=True, help="the dongle's serial port (/dev/ttyUSB0)")
    broute.add_argument("--baud", type=int, default=115200, help="baud rate")
    _spool_arguments(broute)


def _spool_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spool", help="spool directory (default: <files dir>/spool/<kind>-<port>)")
    parser.add_argument("--spool-max-mb", type=int, default=100, help="spool bound in MiB")


def _producer(settings: Settings) -> RawProducer:
    from bridges.kafka import RawProducer

    return RawProducer(settings.kafka.connection(), settings.kafka.partitions)


def _spool(settings: Settings, args: argparse.Namespace) -> Spool:
    from bridges.spool import Spool

    spool_dir = args.spool or settings.files.dir / "spool" / f"{args.kind}-{Path(args.port).name}"
    return Spool(Path(spool_dir), max_bytes=args.spool_max_mb * 2**20)


def run_mqtt(settings: Settings, _args: argparse.Namespace) -> int:
    from bridges.mqtt import MqttBridge

    bridge = MqttBridge(settings.mqtt, _producer(settings), settings.read_meters_file().driver_config())

    return run_once_kafka_answers(settings.kafka, bridge.run)


def run_stream(settings: Settings, args: argparse.Namespace) -> int:
    """`serial` (line sensors) and `p1` (DSMR telegrams)."""
    from bridges.stream import Port, StreamBridge

    seven = args.framing == "7E1"
    try:
        port = Port(args.port, args.baud, 7 if seven else 8, "E" if seven else "N",
                    silence_seconds=60.0 if args.kind == "p1" else None)
    except ValueError as exc:  # checked before anything is made for it (its spool)
        raise ConfigError(str(exc)) from None
    producer, spool = _producer(settings), _spool(settings, args)
    run_until_signal(StreamBridge("lines" if args.kind == "serial" else "dsmr", port, args.device, producer,
                                  spool).run)
    return 0


def run_broute(settings: Settings, args: argparse.Namespace) -> int:
    from bridges.broute import BrouteSession, run_broute_bridge

    session = BrouteSession(args.port, settings.broute, args.baud)
    producer, spool = _producer(settings), _spool(settings, args)
    run_until_signal(lambda stop: run_broute_bridge(session, producer, spool, settings.broute.device, args.port,
                                                    stop))
    return 0
