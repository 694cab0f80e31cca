"""`meter.readings.site` → `power.surplus`: the readings of each site's grid, PV, charger and battery
meters, keyed by site, and its chargers' mode sets (header `command: mode`, from `wattstream charger`),
through the surplus controller (state per site in the agent's table, `agents.state`); one
`SurplusSignal` per grid reading, produced at once for the chargers and written to the sink. One record
at a time (a few per second per site); each exactly once (`agents.state`: a site reading a decode
agent sent again after a kill is known by its position and skipped). A grid reading at or before the
last decided event time (out of order) gets no decision, so a `power.surplus` record is known by
(site, ts): one sent again after a kill is the same decision, and consumers skip a ts they have seen."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import faust
from faust.types import EventT
from pydantic import ValidationError

from pipeline import topics
from pipeline.agents.batches import dead_lettering, register_batches
from pipeline.agents.deadletter import header_map, parse_reading, send_deadletter
from pipeline.agents.outbox import Outbox, Outlet
from pipeline.agents.state import Batch, Entry
from pipeline.errors import Reason, Stage
from pipeline.logic.surplus import NO_FEED, Feed, SiteState, on_command, on_reading
from pipeline.models import ModeCommand
from pipeline.settings import Settings
from pipeline.sinks import Record, Sink, write_all
from pipeline.sites import Site


def register_surplus(app: faust.App, outlet: Outlet, site_readings: faust.TopicT, deadletter: faust.TopicT, sink: Sink,
                     settings: Settings,
                     sites: Mapping[str, Site], feeds: Mapping[str, Feed]) -> None:
    rejected = dead_lettering(deadletter, topics.SITE_READINGS)

    async def dead(event: EventT[bytes], reason: Reason, error: str) -> None:
        await send_deadletter(deadletter, key=event.key, value=event.value, headers=header_map(event.headers),
                              source_topic=topics.SITE_READINGS, stage=Stage.SURPLUS, reason=reason, error=error)

    async def command(event: EventT[bytes], headers: dict[str, bytes], batch: Batch) -> None:
        """A charger's mode set (`wattstream charger`): into the site's state, decided on at the next grid
        reading."""
        try:
            mode = ModeCommand.from_json(event.value)
        except ValidationError as exc:
            await dead(event, Reason.BAD_COMMAND, f"not a mode command: {exc.errors(include_input=False)[0]['msg']}")
            return
        site = sites.get(mode.site)
        if event.key != mode.site.encode():
            await dead(event, Reason.BAD_COMMAND, f"mode set for site {mode.site!r} under another key")
            return
        if site is None:
            await dead(event, Reason.NO_SITE, f"mode set for site {mode.site!r}, which the meters file does not have")
            return
        entry = batch.take(mode.site.encode(), event, headers)
        if entry is None:
            return
        try:
            on_command(site, _state(entry), mode)
        except ValueError as exc:
            await dead(event, Reason.NO_CHARGER, str(exc))

    async def process(events: Sequence[EventT[bytes]], batch: Batch) -> None:
        signals: list[Record] = []
        out = Outbox(outlet)
        for event in events:
            headers = header_map(event.headers)
            if headers.get(topics.H_COMMAND) == topics.COMMAND_MODE:
                await command(event, headers, batch)
                continue
            reading = await parse_reading(event, deadletter, topics.SITE_READINGS)
            if reading is None:
                continue
            site_name, role = feeds.get(reading.meter_id, NO_FEED)
            site = sites.get(site_name)
            if site is None:  # the meters file changed since the reading was forwarded
                await dead(event, Reason.NO_SITE, f"{reading.meter_id} feeds no site in the meters file")
                continue
            entry = batch.take(site_name.encode(), event, headers)
            if entry is None:
                continue
            signal = on_reading(site, _state(entry), reading, role)
            if signal is not None:
                await out.send(topics.SURPLUS, site_name.encode(), signal.to_json())
                signals.append(signal)
        await out.ship()  # for the chargers, now
        await write_all(sink, signals, settings.worker.retry_max_seconds, rejected)
        await out.confirm()  # before the state says these decisions were made

    register_batches(app, outlet, site_readings, "surplus", settings.worker, settings.kafka.partitions, process,
                     batched=False)


def _state(entry: Entry) -> SiteState:
    if not isinstance(entry.state, SiteState):
        entry.state = SiteState.load(entry.state) if entry.state else SiteState()
    return entry.state
