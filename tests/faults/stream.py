"""Faults as a test tool (docs/development.md): a deterministic raw stream, its fault-free reference computed offline
with the worker's own pure code, and the record-by-record comparison of what a run left in InfluxDB, Kafka
and the daily files with that reference.

The stream (`generate`): IAMMETER meters (most of them three-phase, in every payload form the driver takes)
sending one monitorjson payload per second with rising registers, and a PV site from a recorded day
(`tests.profiles`) as raw payloads of the devices GRID and PV, with a car whose draw the grid meter sees.
The site uses `charger_draw = "setpoint"`, so its decisions are a function of the grid readings alone: the
closed loop (decision → draw → next grid reading) is generated here once, and a worker must decide the
same however its partitions interleave. The site day is the cloudy afternoon, where the car starts and
stops within minutes (the morning hours keep it charging) with evcc's timing (no minimum charge time,
no riding out clouds: more decisions that change within the stream).
"""

from __future__ import annotations

import math
import random
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bridges.kafka import raw_headers
from pipeline.backtest import Backtest
from pipeline.drivers import DRIVERS, Received, iammeter
from pipeline.logic.surplus import SiteState, on_reading
from pipeline.logic.windows import MeterState, WindowConfig, step
from pipeline.meters_file import MetersFile
from pipeline.models import Average, Reading, SurplusSignal
from simulators.meters import SimulatedEvn
from tests.profiles import hour_of

START = datetime(2025, 6, 21, 16, 17, 30, tzinfo=UTC)  # mid-window and mid-bucket, on the profile's 10 s grid
DAY = "clouds"
STREAM_SEED = 2025  # the stream is always the same; the fault seed only decides the kills
SITE = "home"
EVN = SimulatedEvn()  # its system title and (demo) key
SITE_METERS = f"""
[[meter]]
driver = "iammeter"
device = "GRID"
role = "grid"
site = "{SITE}"

[[meter]]
driver = "iammeter"
device = "PV"
role = "pv"
site = "{SITE}"

[[meter]]
driver = "evn"
device = "{EVN.system_title.hex().upper()}"
key = "{EVN.key.hex()}"

[[site]]
name = "{SITE}"
phases = "auto"
charger_draw = "setpoint"
min_charge_seconds = 0
stop_window_seconds = 0
"""
# monitorjson forms by meter number: single phase `Data`, three phases `Datas`, with the NEM row, and
# three rows spelled `Data` with `EA.Reactive`; meter 4 is a small PV inverter (export)
FORMS = ("single", "datas", "nem", "data3", "datas")
EVN_ORIGIN = "sensors/smartmeter"  # the bridge keys EVN telegrams by their MQTT topic
BROUTE_DEVICE = "JP01"


@dataclass(frozen=True)
class Raw:
    """One raw record as a bridge produces it to `meter.raw.<driver>`, keyed by `device`."""

    device: str
    payload: bytes
    received_at: datetime
    driver: str = "iammeter"
    origin: str = ""  # default: the IAMMETER topic of the device

    def record(self) -> tuple[bytes, bytes]:
        return self.device.encode(), self.payload

    def headers(self) -> list[tuple[str, bytes]]:
        return raw_headers(self.driver, self.origin or f"device/{self.device}/realtime", self.received_at)


def meters_file() -> MetersFile:
    return MetersFile.model_validate(tomllib.loads(SITE_METERS))


def _kwh(wh: float) -> str:
    """A register as the meter shows it: whole Wh counted, in kWh with three decimals."""
    whole = math.floor(wh)
    return f"{whole // 1000}.{whole % 1000:03d}"


@dataclass
class Register:
    """Import and export energy (or inductive and capacitive reactive energy) in Wh, never going back."""

    up: float
    down: float = 0.0

    def run(self, power: float, seconds: float) -> None:
        if power >= 0:
            self.up += power * seconds / 3600
        else:
            self.down -= power * seconds / 3600


@dataclass
class Phase:
    """One phase of a simulated meter: a load that wanders and sometimes steps (a kettle, a pump)."""

    rng: random.Random
    base: float
    sign: float = 1.0
    energy: Register = field(default_factory=lambda: Register(0.0))
    reactive: Register = field(default_factory=lambda: Register(0.0))
    appliance: float = 0.0
    left: int = 0
    power: float = 0.0
    pf: float = 0.9

    def tick(self) -> None:
        self.base = min(max(self.base + self.rng.gauss(0, 15), 40.0), 3500.0)
        if self.left <= 0:
            self.appliance = self.rng.choice((0.0, 0.0, 0.0, 800.0, 2000.0))
            self.left = self.rng.randint(30, 240)
        self.left -= 1
        self.power = round(self.sign * (self.base + self.appliance + self.rng.gauss(0, 5)), 1)
        self.pf = round(min(max(self.pf + self.rng.gauss(0, 0.005), 0.75), 0.99), 2)

    def row(self, voltage: float, hz: float) -> str:
        current = abs(self.power) / (voltage * self.pf)
        return (f"[{voltage:.1f},{current:.3f},{self.power:.1f},{_kwh(self.energy.up)},{_kwh(self.energy.down)},"
                f"{hz:.2f},{self.pf:.2f}]")

    def reactive_row(self) -> str:
        var = self.power * math.tan(math.acos(self.pf))
        return f"[{var:.1f},{_kwh(self.reactive.up)},{_kwh(self.reactive.down)}]"

    def run(self, seconds: float) -> None:
        self.energy.run(self.power, seconds)
        self.reactive.run(self.power * math.tan(math.acos(self.pf)), seconds)


def _payload(sn: str, key: str, rows: list[str], reactive: list[str] | None = None) -> bytes:
    body = rows[0] if key == "Data" and len(rows) == 1 else f"[{','.join(rows)}]"
    extra = f',"EA":{{"Reactive":[{",".join(reactive)}]}}' if reactive else ""
    return (f'{{"method":"2-9","mac":"B0F8932A{sn[-4:]}","version":"i.91.063T2","server":"em","SN":"{sn}",'
            f'"{key}":{body}{extra}}}').encode()


def _meter(index: int, start: datetime, seconds: int) -> list[Raw]:
    rng = random.Random(f"{STREAM_SEED}-meter-{index}")
    sn, form = f"WEM{index:05d}", FORMS[index % len(FORMS)]
    phases = [Phase(rng, rng.uniform(100, 1500), -1.0 if index % 10 == 4 else 1.0,
                    Register(rng.uniform(1e5, 9e6), rng.uniform(0, 1e5)), Register(rng.uniform(0, 1e6)))
              for _ in range(1 if form == "single" else 3)]
    net = Register(sum(p.energy.up for p in phases))
    offset = timedelta(milliseconds=(index * 137) % 1000)  # each meter sends at its own fraction of a second
    raws = []
    for second in range(seconds):
        hz = 50 + rng.gauss(0, 0.02)
        for phase in phases:
            phase.tick()
        rows = [phase.row(230 + rng.gauss(0, 1.5), hz) for phase in phases]
        reactive = None
        if form == "nem":
            total = round(sum(p.power for p in phases), 1)
            rows.append(f"[230.0,0.000,{total:.1f},{_kwh(net.up)},{_kwh(net.down)},{hz:.2f},0.90]")
            net.run(total, 1)
        elif form == "data3":
            reactive = [phase.reactive_row() for phase in phases]
        key = "Data" if form in ("single", "data3") else "Datas"
        raws.append(Raw(sn, _payload(sn, key, rows, reactive), start + timedelta(seconds=second) + offset))
        for phase in phases:
            phase.run(1)
    return raws


def _profile(start: datetime, end: datetime) -> list[Reading]:
    hours = range(start.hour, (end - timedelta(microseconds=1)).hour + 1)
    return [r for hour in hours for r in hour_of(DAY, hour) if start <= r.ts < end]


def _site(start: datetime, minutes: int, meters: MetersFile) -> tuple[list[Raw], list[SurplusSignal]]:
    """The recorded grid and PV powers as raw payloads, the car's draw (the last decision) added to the grid
    meter's: the closed loop, decided here with the controller itself."""
    rng = random.Random(f"{STREAM_SEED}-site")
    site, state, draw = meters.sites()[SITE], SiteState(), 0.0
    grid = [Phase(rng, 0.0, energy=Register(rng.uniform(1e6, 5e6), rng.uniform(1e6, 5e6))) for _ in range(3)]
    pv = [Phase(rng, 0.0, energy=Register(0.0, rng.uniform(1e6, 5e6))) for _ in range(3)]
    net = Register(rng.uniform(1e6, 5e6), rng.uniform(1e6, 5e6))
    raws, decisions = [], []
    for recorded in _profile(start, start + timedelta(minutes=minutes)):
        assert recorded.total.power_w is not None
        is_grid = recorded.meter_id == "iammeter:GRID"
        power = round(recorded.total.power_w + (draw if is_grid else 0.0), 1)
        phases = grid if is_grid else pv
        split = round(power / 3, 1)
        for phase, share in zip(phases, (split, split, round(power - 2 * split, 1)), strict=True):
            phase.power, phase.pf = share, 0.95
        hz = 50 + rng.gauss(0, 0.02)
        rows = [phase.row(230 + rng.gauss(0, 1.5), hz) for phase in phases]
        if is_grid:
            rows.append(f"[230.0,0.000,{power:.1f},{_kwh(net.up)},{_kwh(net.down)},{hz:.2f},0.95]")
            net.run(power, 10)
        raw = Raw("GRID" if is_grid else "PV", _payload("GRID" if is_grid else "PV", "Datas", rows), recorded.ts)
        raws.append(raw)
        for phase in phases:
            phase.run(10)
        if is_grid:
            [reading] = iammeter.decode(raw.payload, received_at=raw.received_at, device_id=raw.device)
            signal = on_reading(site, state, reading, "grid")
            if signal is not None:
                decisions.append(signal)
                draw = signal.power_w
    return raws, decisions


def _evn(start: datetime, seconds: int) -> list[Raw]:
    """An EVN meter every 5 s, each telegram split over two MQTT messages at a seeded point: the decoder
    keeps the first part in its state until the second comes (also across a kill)."""
    meter, rng = SimulatedEvn(seed=STREAM_SEED), random.Random(f"{STREAM_SEED}-evn")
    raws = []
    for second in range(0, seconds, 5):
        at = start + timedelta(seconds=second, milliseconds=500)
        telegram = meter.payload(at, 5)
        cut = 2 * rng.randrange(1, len(telegram) // 2)
        raws += [Raw(EVN_ORIGIN, telegram[:cut], at, "evn", EVN_ORIGIN),
                 Raw(EVN_ORIGIN, telegram[cut:], at + timedelta(milliseconds=1), "evn", EVN_ORIGIN)]
    return raws


def _echonet(tid: int, properties: list[tuple[int, bytes]]) -> bytes:
    """An ECHONET Lite Get_Res of the low-voltage smart meter (EOJ 028801) with these EPCs."""
    body = b"".join(bytes([epc, len(edt)]) + edt for epc, edt in properties)
    return bytes.fromhex("1081") + tid.to_bytes(2, "big") + bytes.fromhex("02880105FF0172") + \
        bytes([len(properties)]) + body


def _broute(start: datetime, seconds: int) -> list[Raw]:
    """A B-route meter: its coefficient D3 and unit E1 (0.1 kWh) once, which the decoder keeps to scale
    every later E0 (also across a kill), then power E7 and the import register E0 every 10 s."""
    rng, register = random.Random(f"{STREAM_SEED}-broute"), 51_234.0  # in 0.1 kWh
    raws = [Raw(BROUTE_DEVICE, _echonet(0, [(0xD3, (1).to_bytes(4, "big")), (0xE1, b"\x01")]), start,
                "broute", "/dev/ttyUSB0")]
    for tid, second in enumerate(range(10, seconds, 10), start=1):
        watts = int(900 + 400 * math.sin(second / 300) + rng.gauss(0, 30))
        register += watts * 10 / 3600 / 100
        properties = [(0xE7, watts.to_bytes(4, "big", signed=True)), (0xE0, int(register).to_bytes(4, "big"))]
        raws.append(Raw(BROUTE_DEVICE, _echonet(tid, properties), start + timedelta(seconds=second, milliseconds=700),
                        "broute", "/dev/ttyUSB0"))
    return raws


def decode_all(raws: Iterable[Raw]) -> list[Reading]:
    """The readings of `raws` in order, decoded with the drivers' table entries and per-device state."""
    config = meters_file().driver_config()
    states: dict[tuple[str, str], bytes] = {}
    readings = []
    for raw in raws:
        decoded = DRIVERS[raw.driver].decode(Received(raw.payload, raw.received_at, raw.device, raw.origin),
                                           states.get((raw.driver, raw.device), b""), config)
        states[raw.driver, raw.device] = decoded.state
        readings += decoded.readings
    return readings


@dataclass(frozen=True)
class Stream:
    raws: list[Raw]  # in production order: by receive time, then device
    loop: list[SurplusSignal]  # the decisions the closed loop was generated with


def generate(meters: int, minutes: int, start: datetime = START) -> Stream:
    raws = [raw for index in range(meters) for raw in _meter(index, start, minutes * 60)]
    site, loop = _site(start, minutes, meters_file())
    decoder_state = [*_evn(start, minutes * 60), *_broute(start, minutes * 60)]
    return Stream(sorted([*raws, *site, *decoder_state], key=lambda r: (r.received_at, r.device)), loop)


@dataclass(frozen=True)
class Reference:
    """What a fault-free worker makes of the stream."""

    readings: list[Reading]  # every reading, in production order
    debounced: list[Reading]  # `meter.readings.5m`
    averages: list[Average]  # the closed windows
    decisions: list[SurplusSignal]  # `power.surplus`, in order

    def starts_and_stops(self) -> tuple[int, int]:
        pairs = list(zip(self.decisions, self.decisions[1:], strict=False))
        return sum(b.charge and not a.charge for a, b in pairs), sum(a.charge and not b.charge for a, b in pairs)


def reference(stream: Stream, meters: MetersFile, config: WindowConfig | None = None) -> Reference:
    config = config or WindowConfig()
    readings = decode_all(stream.raws)
    states: dict[str, MeterState] = {}
    debounced, averages = [], []
    for reading in readings:
        result = step(states.setdefault(reading.meter_id, MeterState()), reading, config)
        if result.debounced:
            debounced.append(reading)
        averages += result.averages
    site = sorted((r for r in readings if r.meter_id in meters.feeds()), key=lambda r: r.ts)
    decisions = [s for s in Backtest(meters, config).run(site, "surplus") if isinstance(s, SurplusSignal)]
    return Reference(readings, debounced, averages, decisions)
