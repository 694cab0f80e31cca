"""`agents.decode.DeviceState`: a raw key's state as the table holds it, also in the earlier format
(before the windows moved into the decode agent: no `windows`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pipeline.agents.decode import DeviceState, MeterStates
from pipeline.logic.plausible import Plausibility, check
from pipeline.logic.windows import MeterState, step
from pipeline.models import Reading, Values

READING = Reading(meter_id="iammeter:A", driver="iammeter", ts=datetime(2025, 6, 21, 9, 0, 5, tzinfo=UTC),
                  received_at=datetime(2025, 6, 21, 9, 0, 5, tzinfo=UTC),
                  total=Values(power_w=250.0, energy_import_wh=1000))


def test_a_state_round_trips_through_json() -> None:
    state = DeviceState(decoder="0a0b")
    plausibility, windows = Plausibility(), MeterState()
    assert check(plausibility, READING) is None
    step(windows, READING)
    state.meters["iammeter:A"] = MeterStates(plausibility, windows)
    again = DeviceState.load(json.loads(json.dumps(state.dump())))
    assert again.decoder == "0a0b"
    assert again.meters["iammeter:A"].plausibility.dump() == plausibility.dump()
    assert again.meters["iammeter:A"].windows.dump() == windows.dump()


def test_the_earlier_format_keeps_decoder_and_plausibility_and_starts_windows_afresh() -> None:
    plausibility = Plausibility()
    assert check(plausibility, READING) is None
    old = {"decoder": "ff", "meters": {"iammeter:A": plausibility.dump()}}
    state = DeviceState.load(old)
    assert state.decoder == "ff"
    assert state.meters["iammeter:A"].plausibility.dump() == plausibility.dump()
    assert state.meters["iammeter:A"].windows.dump() == MeterState().dump()
    assert DeviceState.load(None).dump() == {"meters": {}, "windows": {}}
