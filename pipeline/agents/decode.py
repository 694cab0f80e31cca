"""A raw topic → everything it feeds, in one agent per driver (one agent per input topic: every agent
boundary a reading crosses costs more than all the logic applied to it).

Per batch of raw records: the driver's `decode` (`Driver.decode` in `pipeline.drivers.DRIVERS`) on the
exact bytes the bridge received, with the driver's per-key state (EVN's incomplete telegram, B-route's
scaling, the values a one-value-per-topic MQTT device has sent in this round); the check that
each reading can be physically true (`logic.plausible`); the meter's debounce and event-time windows
(`logic.windows`). Out go the readings (`meter.readings`), the debounced readings (`.5m`), the closed
windows (`meter.averages.10m`) and the readings of a site's grid, PV, charger and battery meters
(`meter.readings.site`, keyed by site, where the surplus agent decides); the readings, debounced
readings and averages are written to the sink. Undecodable input and implausible readings go to the
dead-letter topic; the agent keeps going.

The state of a raw key (its device) is one entry of the agent's table (`agents.state`): the decoder's
state and, per meter it carries, the plausibility state and the debounce bucket and open windows. So a
meter's windows live with the device that sends its readings (a meter is expected to come from one
device key: one sent under two keys would be windowed twice)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import faust
from faust.types import EventT

from pipeline import envelope, topics
from pipeline.agents.batches import dead_lettering, register_batches
from pipeline.agents.deadletter import header_map, send_deadletter
from pipeline.agents.outbox import Outbox, Outlet
from pipeline.agents.state import Batch, position
from pipeline.drivers import Config, Driver, Received
from pipeline.errors import Implausible, IngestError
from pipeline.health import READINGS
from pipeline.logic.plausible import Limits, Plausibility, check
from pipeline.logic.surplus import Feed
from pipeline.logic.windows import MeterState
from pipeline.logic.windows import step as window_step
from pipeline.models import Reading, format_ts
from pipeline.settings import Settings
from pipeline.sinks import Debounced, Position, Record, Sink, write_all

log = logging.getLogger(__name__)
DEFAULT_LIMITS = Limits()  # a meter the meters file does not list


def received_at(headers: Mapping[str, bytes], event: EventT[bytes]) -> datetime:
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


class SinkPositions:
    """Which events of a batch a sink that keeps its own position (`Sink.written`, the files) has already.

    After a kill the agent applies again what its saved state did not hold yet; the sink may have
    written some of it. Its position counts only in the partition's current history (`Progress.history`):
    a position from another one is from a Kafka started afresh (the embedded run's new broker).
    The position never goes back otherwise (`through`)."""

    def __init__(self, sink: Sink, batch: Batch) -> None:
        self._sink, self._batch = sink, batch
        self._kept: dict[str, tuple[str | None, int | None]] = {}  # source → (history, first offset missing)

    def _position(self, event: EventT[bytes]) -> tuple[str, tuple[str | None, int | None]]:
        tp = event.message.tp
        source = f"{tp.topic}/{tp.partition}"
        if source not in self._kept:
            history, kept = self._batch.history(tp), self._sink.written(source)
            self._kept[source] = history, kept.offset if kept is not None and kept.history == history else None
        return source, self._kept[source]

    def written(self, event: EventT[bytes]) -> bool:
        first_missing = self._position(event)[1][1]
        return first_missing is not None and event.message.offset < first_missing

    def through(self, events: Sequence[EventT[bytes]]) -> dict[str, Position]:
        """The sink's position once it has written what this batch gives it."""
        ends: dict[str, int] = {}
        for event in events:
            source, (_, first_missing) = self._position(event)
            ends[source] = max(event.message.offset + 1, first_missing or 0)
        return {source: Position(history, end) for source, end in ends.items()
                if (history := self._kept[source][0]) is not None}


@dataclass
class MeterStates:
    """What the agent keeps of one meter: its plausibility and its debounce bucket and open windows."""

    plausibility: Plausibility = field(default_factory=Plausibility)
    windows: MeterState = field(default_factory=MeterState)


@dataclass
class DeviceState:
    """The state of one raw key (a device), live between checkpoints (`agents.state`), as JSON in the
    table: `{"decoder": <hex>, "meters": {meter: plausibility}, "windows": {meter: windows}}`."""

    decoder: str = ""  # the driver's own state (`Decoded.state`), hex
    meters: dict[str, MeterStates] = field(default_factory=dict)

    def dump(self) -> dict[str, Any]:
        data: dict[str, Any] = {"meters": {meter: s.plausibility.dump() for meter, s in self.meters.items()},
                                "windows": {meter: s.windows.dump() for meter, s in self.meters.items()}}
        if self.decoder:
            data["decoder"] = self.decoder
        return data

    @classmethod
    def load(cls, data: dict[str, Any] | None) -> DeviceState:
        data = data or {}
        plausibility, windows = data.get("meters", {}), data.get("windows", {})
        return cls(data.get("decoder", ""), {
            meter: MeterStates(Plausibility.load(plausibility[meter]) if meter in plausibility else Plausibility(),
                               MeterState.load(windows[meter]) if meter in windows else MeterState())
            for meter in plausibility.keys() | windows.keys()})


def register_decode(app: faust.App, outlet: Outlet, raw: faust.TopicT, deadletter: faust.TopicT, sink: Sink,
                    settings: Settings,
                    name: str, driver: Driver, config: Config, limits: Mapping[str, Limits],
                    feeds: Mapping[str, Feed]) -> None:
    """The agent of one driver's raw topic (batches, each record once: `agents.batches`). Every output
    is confirmed by Kafka, and the batch written to the sink, before the entries are saved; readings
    and site readings carry their position (`agents.state`), so the consumers downstream know a repeat
    after a kill."""
    decode, keep_state_on_error = driver.decode, driver.keep_state_on_error
    source = topics.raw_topic(name)
    decoded_count = READINGS.labels(name)
    window_config = settings.windows.config()
    retry = settings.worker.retry_max_seconds
    rejected = dead_lettering(deadletter, source)

    async def dead(key: bytes | None, value: bytes | None, headers: Mapping[str, bytes], exc: IngestError) -> None:
        await send_deadletter(deadletter, key=key, value=value, headers=headers, source_topic=source,
                              stage=exc.stage, reason=exc.reason, error=str(exc))

    async def run_decoder(event: EventT[bytes], key: bytes, payload: bytes, headers: Mapping[str, bytes],
                          state: DeviceState) -> list[Reading]:
        """The payload's readings (the driver's own state in `state.decoder`); none after a dead letter."""
        device = key.decode("utf-8", "replace") if key else None
        try:
            decoded = decode(Received(payload, received_at(headers, event), device,
                                    headers.get(topics.H_ORIGIN, b"").decode("utf-8", "replace")),
                           bytes.fromhex(state.decoder), config)
        except Exception as exc:  # a decoder's bug too: it must not stop the partition for good
            if not isinstance(exc, IngestError):
                log.exception("%s decoder failed on a record of key %r", name, key)
            await dead(key, payload, headers, exc if isinstance(exc, IngestError)
                       else IngestError(f"{name} decoder failed: {exc!r}"[:500]))
            if not keep_state_on_error or not isinstance(exc, IngestError):  # a bug may lie in the state itself
                state.decoder = ""
            return []
        if decoded.notice:
            log.info("%s %s: %s", name, device, decoded.notice)
        state.decoder = decoded.state.hex()
        return decoded.readings

    async def forward(out: Outbox, reading: Reading, windows: MeterState, place: dict[str, bytes],
                      to_sink: list[Record] | None) -> None:
        """A plausible reading through its meter's debounce and windows: its outputs, and the records for
        the sink (`to_sink` None: the sink has this input already)."""
        decoded_count.inc()
        meter = reading.meter_id
        result = window_step(windows, reading, window_config)
        value, meter_key = reading.to_json(), meter.encode()
        await out.send(topics.READINGS, meter_key, value, place)
        if to_sink is not None:
            to_sink.append(reading)
        if result.debounced:
            await out.send(topics.READINGS_5M, meter_key, value)
            if to_sink is not None:
                to_sink.append(Debounced(reading))
        for average in result.averages:
            await out.send(topics.AVERAGES_10M, meter_key, average.to_json())
            if to_sink is not None:
                to_sink.append(average)
        if result.late:
            log.info("late reading of %s at %s left out of its closed window (%d so far)",
                     meter, reading.ts, windows.late)
        if meter in feeds:
            await out.send(topics.SITE_READINGS, feeds[meter].site.encode(), value, place)

    async def process(events: Sequence[EventT[bytes]], batch: Batch) -> None:
        out = Outbox(outlet)
        records: list[Record] = []
        has = SinkPositions(sink, batch)
        for event in events:
            record_headers = header_map(event.headers)
            try:
                items = envelope.items(event.key, event.value, record_headers)
            except IngestError as exc:
                await dead(event.key, event.value, record_headers, exc)
                continue
            to_sink = None if has.written(event) else records
            in_envelope = topics.H_ENVELOPE in record_headers
            for item, (key, payload, item_headers) in enumerate(items):
                headers = dict(item_headers) if in_envelope else record_headers
                entry = batch.take(key, event, item=item)
                if entry is None:
                    continue
                if not isinstance(entry.state, DeviceState):
                    entry.state = DeviceState.load(entry.state)
                state: DeviceState = entry.state
                for index, reading in enumerate(await run_decoder(event, key, payload, headers, state)):
                    meter = reading.meter_id
                    states = state.meters.get(meter)
                    if states is None:
                        states = state.meters[meter] = MeterStates()
                    reason = check(states.plausibility, reading, limits.get(meter, DEFAULT_LIMITS))
                    if reason is not None:
                        await dead(key, payload, headers, Implausible(f"{meter} at {format_ts(reading.ts)}: {reason}"))
                        continue
                    place = {topics.H_POSITION: position(source, event.message.partition, event.message.offset,
                                                         index, item)}
                    await forward(out, reading, states.windows, place, to_sink)
        await out.ship()  # the site readings to the surplus agent now, not after the sink write
        await write_all(sink, records, retry, rejected, has.through(events))
        await out.confirm()

    register_batches(app, outlet, raw, f"decode-{name}", settings.worker, settings.kafka.partitions, process)
