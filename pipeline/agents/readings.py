"""`meter.readings` → everything that topic feeds, in one agent (DESIGN §4b: one agent per input topic):

per batch (`stream.take_events`), each reading goes through its meter's debounce and event-time windows
(state per meter in the agent's table, `agents.state`); the debounced readings go to
`meter.readings.5m`, closed windows to `meter.averages.10m`, readings of a site's grid / PV / charger
meter to `meter.readings.site`; the readings, debounced readings and averages are written to the sink
(except what a sink that keeps its own position has already, `SinkPositions`). Only then is the state
saved, so a killed worker neither loses nor repeats a bucket or a window; a reading the decode agent
sent again after a kill is known by its position and skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import faust
from faust.types import EventT

from pipeline import topics
from pipeline.agents.batches import dead_lettering, register_batches
from pipeline.agents.deadletter import header_map, parse_reading
from pipeline.agents.state import Batch, Entry, position
from pipeline.logic.windows import MeterState, WindowConfig, step
from pipeline.settings import Role, Settings
from pipeline.sinks import Debounced, Record, Sink, write_all

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outputs:
    readings_5m: faust.TopicT
    averages: faust.TopicT
    site_readings: faust.TopicT
    deadletter: faust.TopicT


class SinkPositions:
    """Which events of a batch a sink that keeps its own position (`Sink.written`, the files) has already.

    After a kill the agent applies again what its saved state did not hold yet; the sink may have
    written some of it. Its position counts only for a partition the agent has saved progress of: with
    none, Kafka was started afresh (the embedded run's broker keeps nothing) and the position is from an
    old history. The position never goes back otherwise (`through`)."""

    def __init__(self, sink: Sink, batch: Batch) -> None:
        self._sink, self._batch = sink, batch
        self._first_missing: dict[str, int | None] = {}

    def _position(self, event: EventT) -> tuple[str, int | None]:
        tp = event.message.tp
        source = f"{tp.topic}/{tp.partition}"
        if source not in self._first_missing:
            resumed = self._batch.stored(tp) is not None
            self._first_missing[source] = self._sink.written(source) if resumed else None
        return source, self._first_missing[source]

    def written(self, event: EventT) -> bool:
        first_missing = self._position(event)[1]
        return first_missing is not None and event.message.offset < first_missing

    def through(self, events: Sequence[EventT]) -> dict[str, int]:
        """The sink's position once it has written what this batch gives it."""
        ends: dict[str, int] = {}
        for event in events:
            source, first_missing = self._position(event)
            ends[source] = max(event.message.offset + 1, first_missing or 0)
        return ends


def register_readings(app: faust.App, readings: faust.TopicT, out: Outputs, sink: Sink, settings: Settings,
                      roles: Mapping[str, tuple[str, Role]]) -> None:
    config = WindowConfig.of(settings.windows)
    retry = settings.worker.retry_max_seconds
    rejected = dead_lettering(out.deadletter, topics.READINGS)

    async def process(events: Sequence[EventT], batch: Batch) -> None:
        records: list[Record] = []
        sends: list[tuple[faust.TopicT, bytes, bytes, dict[str, bytes] | None]] = []
        states: dict[bytes, tuple[Entry, MeterState]] = {}
        has = SinkPositions(sink, batch)
        for event in events:
            reading = await parse_reading(event, out.deadletter, topics.READINGS)
            if reading is None:
                continue
            key = reading.meter_id.encode()
            entry = batch.take(key, event, header_map(event.headers))
            if entry is None:
                continue
            if key not in states:
                states[key] = entry, MeterState.load(entry.state) if entry.state else MeterState()
            state = states[key][1]
            result = step(state, reading, config)
            to_sink = not has.written(event)
            if to_sink:
                records.append(reading)
            if result.debounced:
                sends.append((out.readings_5m, key, event.value, None))
                if to_sink:
                    records.append(Debounced(reading))
            for average in result.averages:
                sends.append((out.averages, key, average.to_json(), None))
                if to_sink:
                    records.append(average)
            if result.late:
                log.info("late reading of %s at %s left out of its closed window (%d so far)",
                         reading.meter_id, reading.ts, state.late)
            if reading.meter_id in roles:
                place = position(topics.READINGS, event.message.partition, event.message.offset, 0)
                sends.append((out.site_readings, roles[reading.meter_id][0].encode(), event.value,
                              {topics.H_POSITION: place}))
        await write_all(sink, records, retry, rejected, has.through(events))
        # Sent now (not attached to whichever event is current) and confirmed before the state is saved:
        # a kill in between makes a restarted worker send them again, never lose them.
        await asyncio.gather(*[await topic.send(key=key, value=value, headers=headers, force=True)
                               for topic, key, value, headers in sends])
        for entry, state in states.values():
            entry.state = state.dump()

    register_batches(app, readings, "readings", settings.worker, settings.kafka.partitions, process)
