"""Raw topic → `meter.readings`: one agent per driver runs its pure decoder on the exact bytes the
bridge received. Undecodable input goes to the dead-letter topic; the agent keeps going."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import faust
from faust.types import EventT, StreamT

from pipeline import topics
from pipeline.agents.deadletter import header_map, send_deadletter
from pipeline.drivers import Decoder, echonet
from pipeline.errors import IngestError
from pipeline.models import Reading

log = logging.getLogger(__name__)


def received_at(headers: dict[str, bytes], event: EventT) -> datetime:
    """The bridge's receive time; the Kafka record time when the header is missing or malformed."""
    raw = headers.get(topics.H_RECEIVED_AT)
    if raw:
        try:
            value = datetime.fromisoformat(raw.decode())
            if value.tzinfo is not None:
                return value
        except (UnicodeDecodeError, ValueError):
            pass
    return datetime.fromtimestamp(event.message.timestamp, UTC)


def register_decode(app: faust.App, raw: faust.TopicT, readings: faust.TopicT,
                    deadletter: faust.TopicT, driver: str, decoder: Decoder) -> None:
    source = topics.raw_topic(driver)

    async def decode_raw(stream: StreamT[bytes]) -> None:
        async for event in stream.events():
            headers = header_map(event.headers)
            key: bytes | None = event.key
            try:
                decoded: list[Reading] = decoder(
                    event.value,
                    received_at=received_at(headers, event),
                    device_id=key.decode("utf-8", "replace") if key else None,
                )
            except IngestError as exc:
                await send_deadletter(deadletter, key=key, value=event.value, headers=headers,
                                      source_topic=source, stage=exc.stage, error=str(exc))
                continue
            for reading in decoded:
                await readings.send(key=reading.meter_id.encode(), value=reading.to_json())

    app.agent(raw, name=f"decode-{driver}", concurrency=1)(decode_raw)


def register_broute_decode(app: faust.App, raw: faust.TopicT, readings: faust.TopicT,
                           deadletter: faust.TopicT, partitions: int) -> None:
    """B-route frames need each meter's D3/E1 scaling: it lives in a changelogged table keyed like the
    raw topic (device id), so a restarted or rebalanced worker still turns counts into exact Wh."""
    scaling = app.Table("broute-scaling", key_type=bytes, value_type=bytes, partitions=partitions)
    source = topics.raw_topic(echonet.DRIVER)

    async def decode_broute(stream: StreamT[bytes]) -> None:
        async for event in stream.events():
            headers = header_map(event.headers)
            key: bytes | None = event.key
            state = echonet.Scaling.from_json(scaling.get(key))
            try:
                decoded = echonet.decode(event.value, received_at=received_at(headers, event),
                                         device_id=key.decode("utf-8", "replace") if key else None, scaling=state)
            except IngestError as exc:
                await send_deadletter(deadletter, key=key, value=event.value, headers=headers,
                                      source_topic=source, stage=exc.stage, error=str(exc))
                continue
            if decoded.scaling != state:
                scaling[key] = decoded.scaling.to_json()
            if decoded.unscaled:
                log.info("broute %r: %d energy value(s) left out until D3/E1 are known", key, decoded.unscaled)
            for reading in decoded.readings:
                await readings.send(key=reading.meter_id.encode(), value=reading.to_json())

    app.agent(raw, name="decode-broute", concurrency=1)(decode_broute)
