"""Raw topic → `meter.readings`: one agent per driver runs its pure decoder on the exact bytes the
bridge received (with the driver's per-key state where it has one: EVN's incomplete telegram, B-route's
scaling) and checks that each reading is physically possible (`logic.plausible`), so `meter.readings`
carries only readings that can be true. Undecodable input and implausible readings go to the
dead-letter topic; the agent keeps going."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
from faust.types import EventT

from pipeline import topics
from pipeline.agents.batches import register_batches
from pipeline.agents.deadletter import header_map, send_deadletter
from pipeline.agents.state import Batch, position
from pipeline.drivers import Decoder, echonet, evn
from pipeline.errors import Implausible, IngestError
from pipeline.health import READINGS
from pipeline.logic.plausible import Limits, Plausibility, check
from pipeline.models import Reading, format_ts
from pipeline.settings import WorkerSettings

log = logging.getLogger(__name__)
DEFAULT_LIMITS = Limits()  # a meter the meters file does not list


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
    """A decoder that needs what earlier records of the same key left behind (kept in the key's entry
    of the agent's table, so a restarted or rebalanced worker goes on where it was)."""

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
                    settings: WorkerSettings, partitions: int, driver: str, decoder: Decoder | Stateful,
                    limits: Mapping[str, Limits]) -> None:
    """The decode agent of one driver (batches, each record once: `agents.batches`). The entry of a raw
    key holds the decoder's state (`Stateful`) and the plausibility state of each meter it carries;
    a reading that is not plausible (`logic.plausible`, the meter's `limits`) is a dead letter with
    stage `check`. Each reading goes out with its position (`agents.state`) and is confirmed by Kafka
    before the entries are saved."""
    step = decoder.step if isinstance(decoder, Stateful) else stateless(decoder)
    reset_on_error = isinstance(decoder, Stateful) and decoder.reset_on_error
    source = topics.raw_topic(driver)
    decoded_count = READINGS.labels(driver)

    async def dead(event: EventT, headers: dict[str, bytes], exc: IngestError) -> None:
        await send_deadletter(deadletter, key=event.key, value=event.value, headers=headers, source_topic=source,
                              stage=exc.stage, reason=exc.reason, error=str(exc))

    async def process(events: Sequence[EventT], batch: Batch) -> None:
        sent = []
        checked: dict[tuple[bytes, str], tuple[dict[str, Any], Plausibility]] = {}  # (raw key, meter) → states
        for event in events:
            headers = header_map(event.headers)
            key: bytes = event.key or b""
            entry = batch.take(key, event)
            if entry is None:
                continue
            if entry.state is None:
                entry.state = {}
            state: dict[str, Any] = entry.state
            try:
                decoded, new_state = step(event.value, received_at(headers, event),
                                          key.decode("utf-8", "replace") if key else None,
                                          bytes.fromhex(state.get("decoder", "")) or None)
            except IngestError as exc:
                await dead(event, headers, exc)
                if reset_on_error:
                    state.pop("decoder", None)
                continue
            if new_state:
                state["decoder"] = new_state.hex()
            else:
                state.pop("decoder", None)
            for index, reading in enumerate(decoded):
                meter = reading.meter_id
                if (key, meter) not in checked:
                    saved = state.setdefault("meters", {}).get(meter)
                    checked[key, meter] = state, Plausibility.load(saved) if saved is not None else Plausibility()
                reason = check(checked[key, meter][1], reading, limits.get(meter, DEFAULT_LIMITS))
                if reason is not None:
                    await dead(event, headers, Implausible(f"{meter} at {format_ts(reading.ts)}: {reason}"))
                    continue
                decoded_count.inc()
                sent.append(await readings.send(
                    key=meter.encode(), value=reading.to_json(), force=True,
                    headers={topics.H_POSITION: position(source, event.message.partition, event.message.offset,
                                                         index)}))
        await asyncio.gather(*sent)
        for (_, meter), (state, plausibility) in checked.items():
            state["meters"][meter] = plausibility.dump()

    register_batches(app, raw, f"decode-{driver}", settings, partitions, process)
