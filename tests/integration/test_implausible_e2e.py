"""Readings that decode but cannot be true never reach the sinks or the surplus controller (real Tansu,
worker and InfluxDB): an EVN frame with a flipped ciphertext byte (EVN sends no GCM tag, so it still
decodes), a register that jumps back and forth, a voltage of 10 kV — dead letters with stage `check`,
reason `implausible` and the field — and a meter that was really replaced, accepted again after the
documented rule (`pipeline.logic.plausible`)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from pipeline import topics
from pipeline.drivers import evn
from pipeline.errors import IngestError
from pipeline.logic.plausible import REPLACEMENT_READINGS
from pipeline.models import Reading, SurplusSignal, format_ts
from tests.conftest import Stack
from tests.drivers.test_evn import NOE, frames_of, with_checksums_fixed
from tests.kafka import consume, consume_records, produce

T0 = datetime(2025, 6, 21, 9, tzinfo=UTC)


def iammeter(device: str, seconds: int, wh: int, voltage: float = 230.0, power: float = -2000.0) -> tuple[
        tuple[bytes, bytes], list[tuple[str, bytes]]]:
    """A single-phase IAMMETER payload (register in kWh with 3 decimals = exact Wh) received at T0 + seconds."""
    data = [voltage, abs(power) / voltage, power, wh / 1000, 0.0, 50.0, 0.99]
    payload = json.dumps({"SN": device, "Data": data}).encode()
    return (device.encode(), payload), [(topics.H_RECEIVED_AT, format_ts(T0 + timedelta(seconds=seconds)).encode())]


def flipped_noe_frame() -> tuple[bytes, int, int]:
    """The Netz NÖ sample with one ciphertext byte flipped so that it still decodes, with a far larger
    import register: (frame, the true register, the flipped one)."""
    clean = frames_of(NOE)
    keys = {evn.ANY_METER: bytes.fromhex(str(NOE["key"]))}
    [true] = evn.decode(clean, received_at=T0, keys=keys)
    for index in range(26, len(clean) - 2):
        data = bytearray(clean)
        data[index] ^= 0x40
        frame = with_checksums_fixed(data)
        try:
            [reading] = evn.decode(frame, received_at=T0, keys=keys)
        except IngestError:
            continue
        wh = reading.total.energy_import_wh
        if wh is not None and true.total.energy_import_wh is not None and wh > true.total.energy_import_wh + 10**6:
            return frame, true.total.energy_import_wh, wh
    raise AssertionError("no flip of the sample decodes to a larger import register")


def test_values_that_cannot_be_true_are_dead_letters_and_a_replaced_meter_comes_back(stack: Stack) -> None:
    frame, true_wh, flipped_wh = flipped_noe_frame()
    meters = stack.workdir / "meters.toml"
    meters.write_text(f'[[meter]]\ndriver = "evn"\ndevice = "4B464D6750000009"\nkey = "{NOE["key"]}"\n\n'
                      '[[meter]]\ndriver = "iammeter"\ndevice = "GLITCH"\nrole = "grid"\n')
    stack.env["WATTSTREAM_METERS_FILE"] = str(meters)

    glitch = {4: 0, 6: 999_999_999}  # step → a register that went back / jumped up, then normal again
    records = [iammeter("GLITCH", 10 * i, glitch.get(i, 1000 + i)) for i in range(10)]
    # SWAP: the old meter at 500 kWh, replaced after the 5th reading by a new one counting from 10 Wh
    records += [iammeter("SWAP", 30 * i, 500_000 + i if i < 5 else 10 + i) for i in range(10)]
    records += [iammeter("VOLT", 10 * i, 2000 + i, voltage=10_000.0 if i == 1 else 230.0) for i in range(3)]
    worker = stack.start("worker", "worker")
    worker.wait_for("Worker]: Ready")
    asyncio.run(produce(stack.tansu.address, topics.raw_topic("iammeter"), [r for r, _ in records],
                        [h for _, h in records]))
    evn_headers = [(topics.H_RECEIVED_AT, format_ts(T0).encode())]
    evn_records = [(b"sensors/smartmeter", payload.hex().encode()) for payload in (frames_of(NOE), frame)]
    asyncio.run(produce(stack.tansu.address, topics.raw_topic("evn"), evn_records, [evn_headers, evn_headers]))

    accepted = {
        "iammeter:GLITCH": [1000 + i for i in range(10) if i not in glitch],
        "iammeter:SWAP": [500_000 + i for i in range(5)] + [10 + i for i in range(4 + REPLACEMENT_READINGS, 10)],
        "iammeter:VOLT": [2000, 2002],
        "evn:4B464D6750000009": [true_wh],
    }
    count = sum(map(len, accepted.values()))
    rows = stack.influx.wait_rows("SELECT energy_import_wh FROM readings WHERE phase = 'total' GROUP BY meter", count)
    assert {m: sorted(r["energy_import_wh"] for r in rows if r["meter"] == m) for m in accepted} == \
        {m: sorted(values) for m, values in accepted.items()}
    assert len(rows) == count

    dead = [(key, h) for key, _, h in asyncio.run(consume_records(stack.tansu.address, topics.DEADLETTER, 6))]
    assert all((h[topics.H_STAGE], h[topics.H_REASON]) == (b"check", b"implausible") for _, h in dead)
    errors = sorted((key.decode(), h[topics.H_ERROR].decode()) for key, h in dead)
    assert [key for key, _ in errors] == ["GLITCH", "GLITCH", "SWAP", "SWAP", "VOLT", "sensors/smartmeter"]
    assert "total.energy_import_wh went back from 1003 to 0 Wh" in errors[0][1] + errors[1][1]
    assert "total.energy_import_wh rose from 1005 to 999999999 Wh in 10 s" in errors[0][1] + errors[1][1]
    assert [e for k, e in errors if k == "SWAP"] == [
        f"iammeter:SWAP at {format_ts(T0 + timedelta(seconds=150))}: total.energy_import_wh went back from 500004 "
        "to 15 Wh (1 of 3 readings to accept as a replaced meter)",
        f"iammeter:SWAP at {format_ts(T0 + timedelta(seconds=180))}: total.energy_import_wh went back from 500004 "
        "to 16 Wh (2 of 3 readings to accept as a replaced meter)"]
    assert "total.voltage_v 10000.0 V is outside 50..1000 V" in errors[4][1]
    assert f"total.energy_import_wh rose from {true_wh} to {flipped_wh} Wh" in errors[5][1]

    # what the surplus agent and `wattstream publish` read: only what can be true
    readings = [Reading.from_json(v) for _, v in asyncio.run(consume(stack.tansu.address, topics.READINGS, count))]
    assert sorted((r.meter_id, r.total.energy_import_wh) for r in readings) == \
        sorted((m, wh) for m, values in accepted.items() for wh in values)
    signals = [SurplusSignal.from_json(v) for _, v in asyncio.run(consume(stack.tansu.address, topics.SURPLUS, 8))]
    assert [s.ts for s in signals] == [T0 + timedelta(seconds=10 * i) for i in range(10) if i not in glitch]
