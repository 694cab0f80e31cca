"""Raw topic → `meter.readings`: one agent per driver runs its pure decoder on the exact bytes the
bridge received (with the driver's per-key state where it has one: EVN's incomplete telegram, B-route's
scaling). Undecodable input goes to the dead-letter topic; the agent keeps going."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import faust
from faust.types import EventT

from pipeline import topics
from pipeline.agents.batches import register_batches
from pipeline.agents.deadletter import header_map, send_deadletter
from pipeline.agents.tables import save
from pipeline.drivers import Decoder, echonet, evn
from pipeline.errors import IngestError
from pipeline.health import READINGS
from pipeline.models import Reading
from pipeline.settings import WorkerSettings

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


Step = Callable[[bytes, datetime, str | None, bytes | None], tuple[list[Reading], bytes]]


@dataclass(frozen=True)
class Stateful:
    """A decoder that needs what earlier records of the same key left behind, kept in a changelogged
    table keyed like the raw topic, so a restarted or rebalanced worker goes on where it was."""

    table: str
    step: Step  # (payload, received_at, device id, state) → (readings, new state)
    reset_on_error: bool  # after a dead letter: forget the state (EVN) or keep it (B-route scaling)


def broute_step(payload: bytes, at: datetime, device: str | None, state: bytes | None) -> tuple[list[Reading], bytes]:
    decoded = echonet.decode(payload, received_at=at, device_id=device, scaling=echonet.Scaling.from_json(state))
    if decoded.unscaled:
        log.info("broute %s: %d energy value(s) left out until D3/E1 are known", device, decoded.unscaled)
    return decoded.readings, decoded.scaling.to_json()


def evn_step(keys: Mapping[str, bytes]) -> Step:
    def step(payload: bytes, at: datetime, _device: str | None, state: bytes | None) -> tuple[list[Reading], bytes]:
        return evn.decode_stream(payload, received_at=at, pending=state or b"", keys=keys)

    return step


def stateless(decoder: Decoder) -> Step:
    def step(payload: bytes, at: datetime, device: str | None, _state: bytes | None) -> tuple[list[Reading], bytes]:
        return decoder(payload, received_at=at, device_id=device), b""

    return step


def register_decode(app: faust.App, raw: faust.TopicT, readings: faust.TopicT, deadletter: faust.TopicT,
                    settings: WorkerSettings, partitions: int, driver: str, decoder: Decoder | Stateful) -> None:
    """The decode agent of one driver (batches, each record once: `agents.batches`); a `Stateful`
    decoder gets its changelogged table. The readings of a batch are confirmed by Kafka before the
    decoder state and the progress are saved."""
    states = app.Table(decoder.table, key_type=bytes, value_type=bytes, partitions=partitions) \
        if isinstance(decoder, Stateful) else None
    step = decoder.step if isinstance(decoder, Stateful) else stateless(decoder)
    reset_on_error = isinstance(decoder, Stateful) and decoder.reset_on_error
    source = topics.raw_topic(driver)
    decoded_count = READINGS.labels(driver)

    async def process(events: Sequence[EventT]) -> None:
        sent = []
        touched: dict[bytes | None, bytes] = {}  # key → its decoder state after this batch
        last: dict[bytes | None, EventT] = {}
        for event in events:
            headers = header_map(event.headers)
            key: bytes | None = event.key
            state = touched[key] if key in touched else states.get(key) if states is not None else None
            try:
                decoded, new_state = step(event.value, received_at(headers, event),
                                          key.decode("utf-8", "replace") if key else None, state)
            except IngestError as exc:
                await send_deadletter(deadletter, key=key, value=event.value, headers=headers,
                                      source_topic=source, stage=exc.stage, reason=exc.reason,
                                      error=str(exc))
                if states is not None and reset_on_error and state:
                    touched[key], last[key] = b"", event
                continue
            if states is not None and new_state != (state or b""):
                touched[key], last[key] = new_state, event
            decoded_count.inc(len(decoded))
            for reading in decoded:
                sent.append(await readings.send(key=reading.meter_id.encode(), value=reading.to_json(), force=True))
        await asyncio.gather(*sent)
        for key, value in touched.items():
            save(states, key, value, last[key])

    register_batches(app, raw, f"decode-{driver}", settings, partitions, process)
