"""Sending what could not be processed to `meter.deadletter`: the original key, bytes and headers,
plus `stage`, `reason`, `error` and `source_topic` headers. Nothing is dropped silently. Counted by stage, reason
(a short, fixed name for the kind of failure) and source topic."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from faust.types import EventT, TopicT

from pipeline import topics
from pipeline.drivers import reading
from pipeline.errors import NotAReading, Reason, Stage
from pipeline.health import DEADLETTERS
from pipeline.models import Reading

log = logging.getLogger(__name__)


def header_map(headers: Sequence[tuple[str, bytes]] | Mapping[str, bytes] | None) -> dict[str, bytes]:
    if not headers:
        return {}
    return dict(headers.items() if isinstance(headers, Mapping) else headers)


async def send_deadletter(
    deadletter: TopicT, *, key: bytes | None, value: bytes | None,
    headers: Mapping[str, bytes], source_topic: str, stage: Stage, reason: Reason, error: str,
) -> None:
    """Returns once Kafka has it (before the agent saves its progress past the record)."""
    log.warning("dead letter: stage=%s source=%s key=%r error=%s", stage, source_topic, key, error)
    DEADLETTERS.labels(stage, reason, source_topic).inc()
    sent = await deadletter.send(
        key=key,
        value=value if value is not None else b"",
        headers={
            **headers,
            topics.H_STAGE: stage.encode(),
            topics.H_REASON: reason.encode(),
            topics.H_ERROR: error.encode(),
            topics.H_SOURCE_TOPIC: source_topic.encode(),
        },
        # Sent now: Faust would attach it to the stream's current event, which in a batch
        # (`take_events`) is not the event that failed, and publish it only when that one is committed.
        force=True,
    )
    await sent


async def parse_reading(event: EventT[bytes], deadletter: TopicT, source_topic: str) -> Reading | None:
    """The event's `Reading`, or None after sending the event to the dead-letter topic."""
    try:
        return reading.parse(event.value)
    except NotAReading as error:
        await send_deadletter(deadletter, key=event.key, value=event.value, headers=header_map(event.headers),
                              source_topic=source_topic, stage=error.stage, reason=error.reason, error=str(error))
        return None
