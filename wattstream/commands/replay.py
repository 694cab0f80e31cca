"""`wattstream replay [--since T] [--until T] [--topic T]`: what Kafka holds of the worker's outputs →
InfluxDB again (`pipeline.replay`). Exit status 1 if a record was unreadable or refused, 2 for a
configuration error."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING

from pipeline.settings import Settings
from wattstream.commands.common import add_command

if TYPE_CHECKING:
    from wattstream.commands.common import Subparsers

SETTINGS = ("kafka", "influx", "worker.batch_size", "worker.retry_max_seconds", "worker.log_level")


def add_parser(sub: Subparsers) -> None:
    replay = add_command(sub, "replay", help="write what Kafka holds of the worker's outputs to InfluxDB again",
                         settings=SETTINGS, run=run_replay)
    replay.add_argument("--since", type=timestamp, help="from the records Kafka stamped at or after this time "
                        "(ISO 8601, e.g. 2026-11-01T00:00+01:00; default: all it holds)")
    replay.add_argument("--until", type=timestamp, help="up to the records stamped before this time")
    replay.add_argument("--topic", action="append",
                        help="only this output topic (repeat for more; default: all four the sink stores)")


def timestamp(text: str) -> datetime:
    """An ISO 8601 time; without a zone, the machine's."""
    ts = datetime.fromisoformat(text)
    return ts if ts.tzinfo else ts.astimezone()


def run_replay(settings: Settings, args: argparse.Namespace) -> int:
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
