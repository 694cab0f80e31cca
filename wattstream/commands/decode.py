"""`wattstream decode DRIVER`: payloads on stdin → Reading JSON lines on stdout, through the driver's
entry of the driver table as the worker uses it (each device's state carried from payload to payload).

Input: one payload per line; `--topics`: `<topic> <payload>` per line, as `mosquitto_sub -v` prints it
(the device id then comes from the topic as the MQTT bridge takes it, and topics the bridge would not
subscribe for the driver are left out); a driver with a framer (DSMR telegrams, line sensors) reads
stdin as the byte stream its port would give. Errors go to stderr, one line each; exit status 1 if
there were any, 2 for a configuration error."""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

from pipeline.drivers import DRIVERS, Config, Driver, Received, Router
from pipeline.drivers.config import ANY_METER, aes_key
from pipeline.drivers.mqtt_json_mapping import JsonMapping, Mappings
from pipeline.errors import IngestError
from pipeline.meters_file import MetersFile
from pipeline.settings import Settings
from wattstream.commands.common import add_command

if TYPE_CHECKING:
    from wattstream.commands.common import Subparsers


def add_parser(sub: Subparsers) -> None:
    decode = add_command(sub, "decode", help="decode payloads from stdin (one per line, or the stream a framed "
                         "driver's port gives) as the worker does", settings=("meters_file", "decode"),
                         run=run_decode, logs=False)
    decode.add_argument("driver", choices=sorted(DRIVERS))
    decode.add_argument("--device", help="device id for payloads that do not carry one (default: from the topic)")
    decode.add_argument("--key", help="EVN, encrypted DSMR: the AES key for every meter of the input, 32 hex digits "
                        "(instead of the meters file's; prefer WATTSTREAM_DECODE_KEY: a command line is visible to "
                        "other users)")
    decode.add_argument("--meters", help="the meters file with keys and mappings (default: WATTSTREAM_METERS_FILE)")
    decode.add_argument("--preset", help="mqtt_json: this preset's mapping (shelly_pro_3em, tasmota_sml, ...)")
    decode.add_argument("--topic", help="the MQTT topic of every payload (mqtt_json finds its mapping by it)")
    decode.add_argument("--topics", action="store_true",
                        help="each line is `<topic> <payload>`, as `mosquitto_sub -v` prints it")


def _config(settings: Settings, args: argparse.Namespace) -> Config:
    config = (MetersFile.load(Path(args.meters)) if args.meters else settings.read_meters_file()).driver_config()
    if args.preset:
        config = Config(config.keys, Mappings.of((JsonMapping(preset=args.preset),)))
    if args.key:  # the one key for every meter of the input
        config = Config({ANY_METER: aes_key(args.key, "every meter (--key)")}, config.mappings)
    elif settings.decode.key is not None:
        key = aes_key(settings.decode.key.get_secret_value(), "every meter (WATTSTREAM_DECODE_KEY)")
        config = Config({ANY_METER: key}, config.mappings)
    return config


def _payloads(args: argparse.Namespace, driver: Driver) -> Iterator[tuple[str, str, bytes]]:
    """(where in the input, MQTT topic, payload) of each payload on stdin."""
    if driver.framer is not None and not args.topics:
        framer = driver.framer()
        number = 0
        stdin = cast(io.BufferedReader, sys.stdin.buffer)  # (typed as any binary file)
        for chunk in iter(lambda: stdin.read1(1 << 16), b""):
            for payload in framer.feed(chunk):
                number += 1
                yield f"payload {number}", args.topic or "", payload
        return
    for number, line in enumerate(sys.stdin.buffer, start=1):
        payload, topic = line.strip(), args.topic or ""
        if args.topics:
            topic_bytes, _, payload = payload.partition(b" ")
            topic = topic_bytes.decode("utf-8", "replace")
        if payload:
            yield f"line {number}", topic, payload


def run_decode(settings: Settings, args: argparse.Namespace) -> int:
    try:
        config = _config(settings, args)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    driver, router = DRIVERS[args.driver], Router(config)
    states: dict[str | None, bytes] = {}
    failed = skipped = 0
    for where, topic, payload in _payloads(args, driver):
        found = router.route(topic) if topic else None
        if args.topics and args.driver in router.drivers and (found is None or found[0] != args.driver):
            skipped += 1  # the bridge does not subscribe it for this driver
            continue
        device = args.device or (found[1] if found is not None and found[0] == args.driver else None)
        try:
            received = Received(payload, datetime.now(UTC), device, topic)
            decoded = driver.decode(received, states.get(device, b""), config)
        except IngestError as exc:
            failed += 1
            print(f"{where}: {exc.stage} error: {exc}", file=sys.stderr)
            if not driver.keep_state_on_error:
                states.pop(device, None)
            continue
        states[device] = decoded.state
        if decoded.notice:
            print(f"{where}: {decoded.notice}", file=sys.stderr)
        for reading in decoded.readings:
            sys.stdout.write(reading.to_json().decode() + "\n")
    sys.stdout.flush()
    if skipped:
        print(f"{skipped} line(s) on topics the bridge does not subscribe for {args.driver}: left out", file=sys.stderr)
    return 1 if failed else 0
