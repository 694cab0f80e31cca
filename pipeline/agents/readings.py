"""`meter.readings` → everything that topic feeds, in one agent (DESIGN §4b: one agent per input topic):

per batch (`stream.take_events`), each reading goes through its meter's debounce and event-time windows
(state per meter in the changelogged table `meter-state`); the debounced readings go to
`meter.readings.5m`, closed windows to `meter.averages.10m`, readings of a site's grid / PV / charger
meter to `meter.readings.site`; the readings, debounced readings and averages are written to the sink.
Only then is the state saved (with the partition's progress, `agents.progress`), so a stopped worker
neither loses nor repeats a bucket or a window.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import faust
from faust.types import EventT

from pipeline import topics
from pipeline.agents.batches import dead_lettering, register_batches
from pipeline.agents.deadletter import parse_reading
from pipeline.agents.tables import save_all
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


def register_readings(app: faust.App, readings: faust.TopicT, out: Outputs, sink: Sink, settings: Settings,
                      roles: Mapping[str, tuple[str, Role]]) -> None:
    states = app.Table("meter-state", key_type=bytes, value_type=bytes, partitions=settings.kafka.partitions)
    config = WindowConfig.of(settings.windows)
    retry = settings.worker.retry_max_seconds
    rejected = dead_lettering(out.deadletter, topics.READINGS)

    async def process(events: Sequence[EventT]) -> None:
        records: list[Record] = []
        sends: list[tuple[faust.TopicT, bytes, bytes]] = []
        touched: dict[bytes, MeterState] = {}
        last: dict[bytes, EventT] = {}
        for event in events:
            reading = await parse_reading(event, out.deadletter, topics.READINGS)
            if reading is None:
                continue
            records.append(reading)
            key = reading.meter_id.encode()
            state = touched.get(key)
            if state is None:
                saved = states.get(key)
                state = touched[key] = MeterState.load(json.loads(saved)) if saved else MeterState()
            last[key] = event
            result = step(state, reading, config)
            if result.debounced:
                records.append(Debounced(reading))
                sends.append((out.readings_5m, key, event.value))
            for average in result.averages:
                records.append(average)
                sends.append((out.averages, key, average.to_json()))
            if result.late:
                log.info("late reading of %s at %s left out of its closed window (%d so far)",
                         reading.meter_id, reading.ts, state.late)
            if reading.meter_id in roles:
                sends.append((out.site_readings, roles[reading.meter_id][0].encode(), event.value))
        await write_all(sink, records, retry, rejected)
        # Sent now (not attached to whichever event is current) and confirmed before the state is saved:
        # a stop or crash in between makes a restarted worker produce them again, never lose them.
        await asyncio.gather(*[await topic.send(key=key, value=value, force=True) for topic, key, value in sends])
        save_all(states, touched, last)

    register_batches(app, readings, "readings", settings.worker, settings.kafka.partitions, process)
