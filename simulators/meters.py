"""Simulated meters for the embedded run and the demo, publishing what the real devices publish:
IAMMETER monitorjson on `device/<SN>/realtime` (a single-phase house with a kettle now and then, and a
three-phase meter with PV that exports around noon, reactive `EA` block included) and Acrel ADW300 /
ADW310 `json-v2/analog` message pairs, and an encrypted EVN P1 meter (hex M-Bus frames).

Plus a PV site with a car (`SimulatedSite`): a grid, a PV and a charger meter (IAMMETER), a house
battery (`mqtt_json`), the sun independent of the time of day so the demo charges at any hour (passing
clouds included), and a simulated charger that follows the `wattstream` decisions on MQTT; its draw
shows on the grid meter."""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from Crypto.Cipher import AES

from bridges.mqtt import new_client
from pipeline.brokers import MqttSettings
from pipeline.models import SOC
from pipeline.sites import DEFAULT_TOPICS
from simulators.devices import (
    MQTT_JSON_METERS_TOML,
    Device,
    SimulatedAdw300,
    SimulatedOpenDtu,
    SimulatedP1,
    SimulatedShellyPro3em,
)

BATTERY_WH, BATTERY_MAX_W = 10_000.0, 3_000.0  # the simulated site's house battery
BATTERY_TOPIC = "battery/+/state"  # where it sends its JSON (`+`: its id)


@dataclass
class SimulatedIammeter:
    sn: str
    phases: int  # 1 or 3
    pv_peak_w: float = 0.0
    seed: int = 1
    import_wh: list[float] = field(default_factory=list)
    export_wh: list[float] = field(default_factory=list)

    powers: Callable[[], list[float]] | None = None  # the phase powers from elsewhere (a simulated site)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self.import_wh = [self._rng.uniform(100_000, 900_000) for _ in range(self.phases)]
        self.export_wh = [self._rng.uniform(0, 50_000) if self.pv_peak_w else 0.0 for _ in range(self.phases)]
        self._kettle_until = 0.0

    def _phase_power(self, now: datetime, phase: int) -> float:
        load = 120 + 80 * math.sin(now.timestamp() / 600 + phase) + self._rng.gauss(0, 15)
        if phase == 0 and now.timestamp() < self._kettle_until:
            load += 2000
        elif phase == 0 and self._rng.random() < 0.01:
            self._kettle_until = now.timestamp() + 90
        hour = now.hour + now.minute / 60
        sun = max(0.0, math.sin(math.pi * (hour - 6) / 14)) if 6 <= hour <= 20 else 0.0
        return load - self.pv_peak_w * sun / self.phases

    def payload(self, now: datetime, dt_s: float) -> bytes:
        rows = []
        given = self.powers() if self.powers is not None else None
        for i in range(self.phases):
            power = round(given[i] if given is not None else self._phase_power(now, i), 1)
            voltage = round(230 + self._rng.gauss(0, 1.5), 1)
            pf = round(min(1.0, 0.85 + self._rng.random() * 0.14), 2)
            current = round(abs(power) / voltage / pf, 3)
            if power >= 0:
                self.import_wh[i] += power * dt_s / 3600
            else:
                self.export_wh[i] -= power * dt_s / 3600
            rows.append([voltage, current, power, round(self.import_wh[i] / 1000, 3),
                         round(self.export_wh[i] / 1000, 3), round(50 + self._rng.gauss(0, 0.02), 2), pf])
        body: dict[str, object] = {"method": "uploadsn", "mac": f"B0F8{self.sn}", "version": "i.91.063T2",
                                   "server": "em", "SN": self.sn}
        if self.phases == 1:
            body["Data"] = rows[0]
        else:
            body["Datas"] = rows
            body["EA"] = {"Reactive": [[round(-abs(r[2]) * 0.3, 1), 0.0, round(self.import_wh[0] / 4000, 3)]
                                       for r in rows]}
        return json.dumps(body).encode()


@dataclass
class SimulatedEvn:
    """An EVN Kaifa-style meter behind an ESP8266: every cycle a data-notification (flat EVN layout),
    encrypted with AES-128-GCM (no tag, as EVN does) and cut into M-Bus long frames, published as hex
    on `sensors/smartmeter`. The key is a demo key, not a secret."""

    system_title: bytes = bytes.fromhex("4B464D5349000001")  # "KFM" + SI(mulated)
    key: bytes = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
    topic: str = "sensors/smartmeter"
    import_wh: int = 4_200_000
    export_wh: int = 310_000
    frame_counter: int = 1
    seed: int = 11

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    @staticmethod
    def _octets(value: bytes) -> bytes:
        return bytes([0x09, len(value)]) + value

    @staticmethod
    def _clock(now: datetime) -> bytes:
        local = now.astimezone(ZoneInfo("Europe/Vienna"))
        offset = local.utcoffset()
        deviation = -int(offset.total_seconds() // 60) if offset is not None else -0x8000
        return (local.year.to_bytes(2, "big") + bytes([local.month, local.day, local.isoweekday(), local.hour,
                                                        local.minute, local.second, 0])
                + deviation.to_bytes(2, "big", signed=True) + bytes([0x80 if local.dst() else 0x00]))

    def payload(self, now: datetime, dt_s: float) -> bytes:
        watts = max(0, int(400 + 250 * math.sin(now.timestamp() / 500) + self._rng.gauss(0, 20)))
        self.import_wh += round(watts * dt_s / 3600)
        registers = [  # (OBIS C.D, uint tag, value, scaler, unit) as in the Netz NÖ sample
            (1, 8, 0x06, self.import_wh, 0, 0x1E), (2, 8, 0x06, self.export_wh, 0, 0x1E),
            (1, 7, 0x06, watts, 0, 0x1B), (2, 7, 0x06, 0, 0, 0x1B),
            *[(c, 7, 0x12, int(2300 + self._rng.gauss(0, 15)), -1, 0x23) for c in (32, 52, 72)],
            *[(c, 7, 0x12, int(watts / 3 / 2.3), -2, 0x21) for c in (31, 51, 71)],
            (13, 7, 0x12, 950, -3, 0xFF),
        ]
        clock = self._clock(now)
        body = bytearray([0x02, 2 + 3 * len(registers)]) + self._octets(clock)
        for c, d, tag, value, scaler, unit in registers:
            size = 4 if tag == 0x06 else 2
            body += self._octets(bytes([1, 0, c, d, 0, 255])) + bytes([tag]) + value.to_bytes(size, "big")
            body += bytes([0x02, 0x02, 0x0F, scaler & 0xFF, 0x16, unit])
        body += self._octets(b"SIM000000001")
        plain = bytes([0x0F]) + self.frame_counter.to_bytes(4, "big") + bytes([0x0C]) + clock + bytes(body)
        counter = self.frame_counter.to_bytes(4, "big")
        self.frame_counter += 1
        cipher = AES.new(self.key, AES.MODE_GCM, nonce=self.system_title + counter)
        secured = bytes([0x20]) + counter + cipher.encrypt(plain)
        length = bytes([len(secured)]) if len(secured) < 0x80 else bytes([0x81, len(secured)])
        apdu = bytes([0xDB, 0x08]) + self.system_title + length + secured
        segments = [apdu[i:i + 245] for i in range(0, len(apdu), 245)]
        frames = b""
        for index, segment in enumerate(segments):
            ci = index | (0x10 if index == len(segments) - 1 else 0)
            body_bytes = bytes([0x53, 0xFF, ci, 0x01, 0x67]) + segment
            frames += bytes([0x68, len(body_bytes), len(body_bytes), 0x68]) + body_bytes
            frames += bytes([sum(body_bytes) & 0xFF, 0x16])
        return frames.hex().upper().encode()


@dataclass
class SimulatedSite:
    """A house with 8 kWp of PV, a 10 kWh battery run by its own zero-export controller (it sends its power
    and state of charge as JSON, an `mqtt_json` meter) and a car on a charger that follows the site's
    decisions."""

    name: str = "demo"
    pv_peak_w: float = 8000.0
    seed: int = 21
    draw_w: float = 0.0  # what the car draws now
    battery_w: float = 0.0  # + charging, - discharging
    soc: float = 60.0  # % of BATTERY_WH
    grid_sn: str = "5A1E00G1"
    pv_sn: str = "5A1E00P1"
    charger_sn: str = "5A1E00C1"
    battery_id: str = "demo-battery"

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._pv, self._load, self._shadow_until, self._next_cloud = 0.0, 0.0, 0.0, 0.0
        self._at: float | None = None
        self.meters = [SimulatedIammeter(self.grid_sn, 3, seed=self.seed, powers=self._grid),
                       SimulatedIammeter(self.pv_sn, 1, seed=self.seed + 1, powers=lambda: [-self._pv]),
                       SimulatedIammeter(self.charger_sn, 3, seed=self.seed + 2, powers=lambda: [self.draw_w / 3] * 3)]

    def advance(self, now: float) -> None:
        """The sun (slow swell, and a cloud shadow now and then), the house and its battery for this cycle."""
        if now >= self._next_cloud:
            self._shadow_until = now + self._rng.uniform(20, 90)
            self._next_cloud = self._shadow_until + self._rng.uniform(120, 400)
        shade = 0.3 if now < self._shadow_until else 1.0
        self._pv = self.pv_peak_w * (0.75 + 0.2 * math.sin(now / 1200)) * shade
        self._load = 400 + 150 * math.sin(now / 300) + self._rng.gauss(0, 30)
        hours = 0.0 if self._at is None else (now - self._at) / 3600
        self._at = now
        self.soc = min(max(self.soc + self.battery_w * hours / BATTERY_WH * 100, 0.0), 100.0)
        net = self._load - self._pv + self.draw_w
        room = BATTERY_MAX_W if self.soc < 100 else 0.0
        left = BATTERY_MAX_W if self.soc > 5 else 0.0
        self.battery_w = min(-net, room) if net < 0 else -min(net, left)

    def _grid(self) -> list[float]:
        return [(self._load - self._pv + self.draw_w + self.battery_w) / 3] * 3

    def battery_message(self) -> tuple[str, bytes]:
        return (BATTERY_TOPIC.replace("+", self.battery_id),
                json.dumps({"power": round(self.battery_w, 1), "soc": round(self.soc, 1)}).encode())

    def follow(self, decision: bytes | bytearray) -> None:
        """A `wattstream` charger message: draw what the decision allows (the car follows at once)."""
        try:
            signal = json.loads(decision)
            self.draw_w = float(signal["power_w"]) if signal["charge"] else 0.0
        except (ValueError, KeyError, TypeError):
            pass

    def meters_toml(self) -> str:
        """The site's entries for a meters file: its meters (the battery's mapping too), the site (the
        car before the battery above 40 %) and its simulated charger."""
        meters = "".join(f'[[meter]]\ndriver = "iammeter"\ndevice = "{sn}"\nrole = "{role}"\nsite = "{self.name}"\n\n'
                         for sn, role in ((self.grid_sn, "grid"), (self.pv_sn, "pv"), (self.charger_sn, "charger")))
        battery = (f'[[meter]]\ndriver = "mqtt_json"\ndevice = "{self.battery_id}"\nrole = "battery"\n'
                   f'site = "{self.name}"\n\n[[mqtt_json]]\ntopic = "{BATTERY_TOPIC}"\n'
                   f'fields = {{ power_w = "power", "extra.{SOC}" = "soc" }}\n\n')
        return (f'{meters}{battery}[[site]]\nname = "{self.name}"\nphases = "auto"\nbattery_priority_soc = 40\n\n'
                f'[[charger]]\nname = "demo-car"\nsite = "{self.name}"\nformat = "wattstream"\ninterval_seconds = 0\n'
                f'priority = 1\n')


def demo_meters_toml() -> str:
    """The meters-file entries the simulators need: the simulated EVN meter with its demo key, the PV
    site with its meters and chargers (`meters.demo.toml` is this text; the embedded run appends it)."""
    sim, site = SimulatedEvn(), SimulatedSite()
    return (f'[[meter]]\ndriver = "evn"\ndevice = "{sim.system_title.hex().upper()}"\n'
            f'key = "{sim.key.hex().upper()}"\nsite = "simulated"\n\n{site.meters_toml()}\n'
            f'[[charger]]\nname = "openevse"\nsite = "{site.name}"\nformat = "openevse"\n\n'
            f'[[charger]]\nname = "000123"\nsite = "{site.name}"\nformat = "goe"\n\n{MQTT_JSON_METERS_TOML}')


def default_meters() -> list[SimulatedIammeter]:
    return [SimulatedIammeter("5A1E0001", phases=1, seed=1),
            SimulatedIammeter("5A1E0003", phases=3, pv_peak_w=9000, seed=3)]


def default_adw300() -> list[SimulatedAdw300]:
    return [SimulatedAdw300("20201998111433", phases=3), SimulatedAdw300("ADW310SIM01", phases=1, seed=8)]


def run_simulator(settings: MqttSettings, interval: float, stop_after: float | None = None) -> None:
    """Every simulated meter (IAMMETER, Acrel, EVN, Shelly, OpenDTU, DSMR P1, the PV site) publishing every
    `interval` seconds; the site's car follows `wattstream/<site>/surplus`. With the stack's MQTT account where
    one is set."""
    site = SimulatedSite()
    client = new_client(settings, "wattstream-simulator")
    client.on_connect = lambda c, *_: c.subscribe(DEFAULT_TOPICS["wattstream"].format(site=site.name), qos=1)
    client.on_message = lambda _c, _u, message: site.follow(message.payload)
    client.reconnect_delay_set(1, 10)
    client.connect_async(settings.host, settings.port)
    client.loop_start()
    iammeters, evn = [*default_meters(), *site.meters], SimulatedEvn()
    more_devices: tuple[Device, ...] = (*default_adw300(), SimulatedShellyPro3em(), SimulatedOpenDtu(), SimulatedP1())
    started = last = time.time()
    try:
        while stop_after is None or time.time() - started < stop_after:
            now = time.time()
            site.advance(now)
            stamp = datetime.now().astimezone()
            for meter in iammeters:
                client.publish(f"device/{meter.sn}/realtime", meter.payload(stamp, now - last), qos=1)
            client.publish(evn.topic, evn.payload(stamp, now - last), qos=1)
            for device in more_devices:
                for topic, payload in device.messages(stamp, now - last):
                    client.publish(topic, payload, qos=1)
            client.publish(*site.battery_message(), qos=1)
            last = now
            time.sleep(interval)
    finally:
        client.loop_stop()
        client.disconnect()


def run_line_sensor(fd: int, interval: float, stop: threading.Event) -> None:
    """An Arduino-style sensor on the device end of a pty: a CSV and a JSON line every `interval`."""
    rng = random.Random(5)
    while not stop.wait(interval):
        temperature = round(18 + 4 * math.sin(time.time() / 900) + rng.gauss(0, 0.1), 2)
        humidity = round(55 + rng.gauss(0, 2), 1)
        try:
            os.write(fd, f"garden,temperature_c,{temperature}\r\n".encode())
            os.write(fd, json.dumps({"unit": "garden", "humidity_pct": humidity}).encode() + b"\r\n")
        except OSError:  # the bridge side went away; it re-opens the port
            continue
