"""`wattstream` — the one entry point. Builds `Settings()` and the app; nothing else does.

    wattstream run                 the embedded default: brokers, simulated meters, bridge, worker, files
    wattstream worker              the Faust worker (decode, sinks)
    wattstream bridge mqtt         MQTT → Kafka
    wattstream bridge serial --port P   serial line sensors → Kafka
    wattstream bridge p1 --port P       a DSMR P1 port (serial, or tcp://HOST:PORT of a network dongle) → Kafka
    wattstream bridge broute --port P   Wi-SUN dongle (B-route meter) → Kafka
    wattstream charger             power.surplus → the chargers of the meters file, over MQTT
    wattstream publish             meter.readings → MQTT (EVN-style JSON, Reading JSON, Home Assistant discovery)
    wattstream simulate            simulated meters (IAMMETER, Acrel, EVN, Shelly, OpenDTU, DSMR) and a PV site, on MQTT
    wattstream decode DRIVER       payloads on stdin → Reading JSON lines on stdout (wattstream.commands.decode)
    wattstream backtest [FILE]     the windows / surplus logic over Readings → JSON (wattstream.commands.backtest)
    wattstream replay [--since T]  what Kafka holds of the worker's outputs → InfluxDB again
    wattstream bench               throughput/latency of the pipeline beside a plain aiokafka baseline
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

# USR1 toggles debug logging in every command, once it has set its handler; until then (imports take a
# few seconds) it would end the process, as `wattstream run` sends it to all its children
signal.signal(signal.SIGUSR1, signal.SIG_IGN)

from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

from pipeline.settings import Settings  # noqa: E402

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _worker(settings: Settings) -> int:
    from pipeline.app import create_app
    from pipeline.worker import run_worker

    settings.worker_datadir.mkdir(parents=True, exist_ok=True)
    if settings.worker.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.worker.metrics_port)  # a daemon thread: /metrics (pipeline.health)
    run_worker(create_app(settings), settings.worker.log_level)
    return 0


def _run_until_signal(main: object) -> None:
    """Run `main(stop)` until INT/TERM/HUP; USR1 toggles debug logging."""
    from pipeline.worker import toggle_debug

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, toggle_debug)
        await main(stop)  # type: ignore[operator]

    asyncio.run(runner())


def _bridge(settings: Settings, args: argparse.Namespace) -> int:
    from bridges.kafka import RawProducer

    producer = RawProducer(settings.kafka.connection(), settings.kafka.partitions)
    spool = None
    if args.kind != "mqtt" and args.port:
        from bridges.spool import Spool

        spool_dir = args.spool or settings.files.dir / "spool" / f"{args.kind}-{Path(args.port).name}"
        spool = Spool(Path(spool_dir), max_bytes=args.spool_max_mb * 2**20)
    if args.kind == "broute":
        if not args.port:
            print("bridge broute needs --port", file=sys.stderr)
            return 2
        from bridges.broute import BrouteSession, run_broute_bridge

        session = BrouteSession(args.port, settings.broute, args.baud)
        assert spool is not None
        _run_until_signal(lambda stop: run_broute_bridge(session, producer, spool, settings.broute.device, args.port,
                                                         stop))
    elif args.kind in ("serial", "p1"):
        if not args.port:
            print(f"bridge {args.kind} needs --port", file=sys.stderr)
            return 2
        from bridges.stream import Port, StreamBridge

        assert spool is not None
        try:
            port = Port(args.port, args.baud, 7 if args.framing == "7E1" else 8, "E" if args.framing == "7E1" else "N",
                        silence_seconds=60.0 if args.kind == "p1" else None)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
        _run_until_signal(StreamBridge("lines" if args.kind == "serial" else "dsmr", port, args.device, producer,
                                       spool).run)
    else:
        from bridges.mqtt import MqttBridge

        _run_until_signal(MqttBridge(settings.mqtt, producer, settings.plant().driver_config()).run)
    return 0


def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline.worker import toggle_debug
    from simulators.meters import run_simulator

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.default_int_handler)
    signal.signal(signal.SIGUSR1, lambda *_: toggle_debug())  # (by default USR1 would end it)
    try:
        run_simulator(settings.mqtt, args.interval)
    except KeyboardInterrupt:
        pass
    return 0


def _publish(settings: Settings) -> int:
    from bridges.publish import run_publish

    _run_until_signal(lambda stop: run_publish(settings, stop))
    return 0


def _charger(settings: Settings) -> int:
    from bridges.charger import run_chargers

    _run_until_signal(lambda stop: run_chargers(settings, stop))
    return 0


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    import time

    from pipeline.replay import PARSERS, replay
    from pipeline.sinks.influx import InfluxSink

    if not settings.influx.url:
        print("replay writes to InfluxDB: set WATTSTREAM_INFLUX_URL (the daily files would get every line twice)",
              file=sys.stderr)
        return 2
    unknown = set(args.topic or ()) - set(PARSERS)
    if unknown:
        print(f"replay: no such output topic {sorted(unknown)}; choose from {sorted(PARSERS)}", file=sys.stderr)
        return 2
    sink = InfluxSink(settings.influx)

    async def main() -> dict[str, int]:
        try:
            return await replay(settings.kafka.connection(), sink, args.topic or list(PARSERS), since=args.since,
                                until=args.until, batch_size=settings.worker.batch_size,
                                max_backoff=settings.worker.retry_max_seconds)
        finally:
            await sink.close()

    started = time.monotonic()
    counts = asyncio.run(main())
    written = ", ".join(f"{name} {counts.get(name, 0)}" for name in args.topic or PARSERS)
    print(f"replayed into InfluxDB bucket {settings.influx.bucket}: {written}; unreadable "
          f"{counts.get('unreadable', 0)}, refused by InfluxDB {counts.get('rejected', 0)} "
          f"({time.monotonic() - started:.1f} s)")
    return 1 if counts.get("unreadable") or counts.get("rejected") else 0


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from wattstream.embedded.run import run_embedded

    return run_embedded(settings, interval=args.interval, duration=args.duration, kafka_mb=args.kafka_mb)


def _bench(settings: Settings, args: argparse.Namespace) -> int:
    if args.latency:
        from wattstream.bench.latency import run_latency

        return run_latency(args.seconds, rate=args.rate or 1.0, others=args.others, profile=args.profile)
    from wattstream.bench.throughput import run_bench

    return run_bench(args.count, rate=args.rate, profile=args.profile, meters=args.meters, burst=args.burst)


def _count(text: str) -> int:
    number = int(text)
    if number < 0:
        raise argparse.ArgumentTypeError(f"{number}: at least 0")
    return number


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number}: at least 1")
    return number


def _timestamp(text: str) -> datetime:
    """An ISO 8601 time; without a zone, the machine's."""
    ts = datetime.fromisoformat(text)
    return ts if ts.tzinfo else ts.astimezone()


def main(argv: list[str] | None = None) -> int:
    from pipeline.drivers import DRIVERS

    parser = argparse.ArgumentParser(prog="wattstream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the embedded default (no Docker): everything in one command")
    run.add_argument("--interval", type=float, default=2.0, help="seconds between simulated payloads")
    run.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    run.add_argument("--kafka-mb", type=float, default=256,
                     help="start a new embedded Kafka from a snapshot when Tansu holds more than this (MB)")
    sub.add_parser("worker", help="the Faust worker")
    bridge = sub.add_parser("bridge", help="an edge bridge")
    bridge.add_argument("kind", choices=["mqtt", "serial", "p1", "broute"])
    bridge.add_argument("--port", help="serial, p1, broute: the port (/dev/ttyUSB0); p1 also tcp://HOST:PORT "
                        "(a network P1 dongle serving the raw telegrams)")
    bridge.add_argument("--baud", type=int, default=115200, help="serial, p1: baud rate (DSMR 2.2/3: 9600)")
    bridge.add_argument("--framing", choices=["8N1", "7E1"], default="8N1",
                        help="serial, p1: character format (DSMR 2.2/3: 7E1)")
    bridge.add_argument("--device", help="serial, p1: the device name used as the Kafka key (default: the port)")
    bridge.add_argument("--spool", help="serial, p1, broute: spool directory "
                        "(default: <files dir>/spool/<kind>-<port>)")
    bridge.add_argument("--spool-max-mb", type=int, default=100, help="serial, p1, broute: spool bound in MiB")
    sub.add_parser("charger", help="drive the chargers of the meters file from power.surplus")
    sub.add_parser("publish", help="republish readings on MQTT, with Home Assistant discovery")
    simulate = sub.add_parser("simulate", help="simulated meters and a PV site with a car, publishing to MQTT")
    simulate.add_argument("--interval", type=float, default=2.0)
    decode = sub.add_parser("decode", help="decode payloads from stdin (one per line, or the stream a framed "
                            "driver's port gives) as the worker does")
    decode.add_argument("driver", choices=sorted(DRIVERS))
    decode.add_argument("--device", help="device id for payloads that do not carry one (default: from the topic)")
    decode.add_argument("--key", help="EVN, encrypted DSMR: the AES key for every meter of the input, 32 hex digits "
                        "(instead of the meters file's; prefer WATTSTREAM_DECODE_KEY: a command line is visible to "
                        "other users)", default=os.environ.get("WATTSTREAM_DECODE_KEY"))
    decode.add_argument("--meters", help="the meters file with keys and mappings (default: WATTSTREAM_METERS_FILE)")
    decode.add_argument("--preset", help="mqtt_json: this preset's mapping (shelly_pro_3em, tasmota_sml, ...)")
    decode.add_argument("--topic", help="the MQTT topic of every payload (mqtt_json finds its mapping by it)")
    decode.add_argument("--topics", action="store_true",
                        help="each line is `<topic> <payload>`, as `mosquitto_sub -v` prints it")
    from wattstream.commands.backtest import add_parser as backtest_parser
    backtest_parser(sub)
    replay = sub.add_parser("replay", help="write what Kafka holds of the worker's outputs to InfluxDB again")
    replay.add_argument("--since", type=_timestamp, help="from the records Kafka stamped at or after this time "
                        "(ISO 8601, e.g. 2026-11-01T00:00+01:00; default: all it holds)")
    replay.add_argument("--until", type=_timestamp, help="up to the records stamped before this time")
    replay.add_argument("--topic", action="append",
                        help="only this output topic (repeat for more; default: all four the sink stores)")
    bench = sub.add_parser("bench", help="throughput and latency beside a plain aiokafka baseline")
    bench.add_argument("--count", type=int, default=50_000)
    bench.add_argument("--rate", type=float, help="payloads/s of the latency run (default: half the throughput, "
                       "at most 1000)")
    bench.add_argument("--profile", action="store_true", help="also record a py-spy profile of the worker")
    bench.add_argument("--meters", type=_positive, default=100, help="how many simulated meters send the payloads")
    bench.add_argument("--burst", type=_positive, help="produce the payloads this many at a time, as a live bridge "
                       "hands them over (small envelopes: the backlog a stopped worker finds)")
    bench.add_argument("--latency", action="store_true", help="instead: grid meter MQTT → charger MQTT through the "
                       "real bridge, worker and charger processes (--rate: grid payloads/s, default 1)")
    bench.add_argument("--others", type=_count, default=0, help="--latency: meters publishing once a second besides")
    bench.add_argument("--seconds", type=float, default=60.0, help="--latency: how long to measure")
    args = parser.parse_args(argv)
    # dsmr-parser logs every bad telegram line before it raises; the dsmr driver turns that into a dead letter
    logging.getLogger("dsmr_parser").setLevel(logging.CRITICAL)

    settings = Settings()
    if args.command == "decode":
        from wattstream.commands.decode import run_decode

        return run_decode(settings, args)
    logging.basicConfig(level=settings.worker.log_level.upper(), format=LOG_FORMAT)
    logging.getLogger(__name__).debug("settings: %s", settings)  # SecretStr values print masked
    if settings.worker.log_level != "debug":  # aiokafka logs every retry while Kafka is away
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    if args.command == "worker":
        return _worker(settings)
    if args.command == "bridge":
        return _bridge(settings, args)
    if args.command == "simulate":
        return _simulate(settings, args)
    if args.command == "run":
        return _run(settings, args)
    if args.command == "backtest":
        from wattstream.commands.backtest import run_backtest

        return run_backtest(settings, args)
    if args.command == "charger":
        return _charger(settings)
    if args.command == "publish":
        return _publish(settings)
    if args.command == "replay":
        return _replay(settings, args)
    return _bench(settings, args)


if __name__ == "__main__":
    sys.exit(main())
