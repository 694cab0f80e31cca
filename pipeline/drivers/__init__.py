"""Pure decoders, one module per meter family (docs/meters/), and `DRIVERS`: the one table every consumer of
raw payloads — the worker, `wattstream decode`, the MQTT bridge — routes through.

Every entry's `Driver.decode` has one signature, `decode(received, state, config) -> Decoded`:
- `received`: the payload's exact bytes, when the bridge received it, the record key (the device id the
  bridge saw) and where it came from (MQTT topic, serial port);
- `state`: what the driver left for the next payload of the same key (`b""` at first): EVN's incomplete
  telegram, B-route's scaling, the values a one-value-per-topic device has sent so far;
- `config`: what the meters file says about the meters (keys, JSON mappings).
It returns the readings, the new state and, where something is worth a log line, a notice. Stateless
drivers ignore the state. No I/O, asyncio, paho, serial or Kafka here, so every driver runs in a plain
unit test and in `wattstream decode`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import NamedTuple, Protocol

from pipeline.drivers import adw300, broute, dsmr, evn, iammeter, lines, mqtt_json, mqtt_json_mapping, reading
from pipeline.drivers.config import Config, Route
from pipeline.models import Reading

__all__ = ["DRIVERS", "Config", "Decoded", "Driver", "Framer", "Received", "Route", "Router", "routes"]


class Received(NamedTuple):
    payload: bytes
    at: datetime  # when the bridge received the bytes
    device: str | None  # the record key: the device id the bridge saw
    origin: str = ""  # MQTT topic, serial port


class Decoded(NamedTuple):
    readings: list[Reading]
    state: bytes = b""  # for the next payload of the same key; b"": nothing to keep
    notice: str | None = None  # worth a log line, not an error (B-route energy waiting for its scaling)


# A payload, its key's state and what the meters file gives the drivers → readings and the next state
Decode = Callable[[Received, bytes, Config], Decoded]


class Framer(Protocol):
    def feed(self, chunk: bytes) -> Iterator[bytes]: ...


@dataclass(frozen=True)
class Driver:
    decode: Decode
    keep_state_on_error: bool = False  # after a dead letter: keep the state (B-route scaling) or forget it
    routes: tuple[Route, ...] = ()  # MQTT subscriptions the bridge forwards to this driver's raw topic
    framer: Callable[[], Framer] | None = None  # cuts a byte stream (serial, TCP, stdin) into payloads


def _stateless(decode: Callable[..., list[Reading]]) -> Decode:
    def decode_payload(received: Received, _state: bytes, _config: Config) -> Decoded:
        return Decoded(decode(received.payload, received_at=received.at, device_id=received.device))

    return decode_payload


def _evn(received: Received, state: bytes, config: Config) -> Decoded:
    return Decoded(*evn.decode_stream(received.payload, received_at=received.at, pending=state, keys=config.keys))


def _broute(received: Received, state: bytes, _config: Config) -> Decoded:
    decoded = broute.decode(received.payload, received_at=received.at, device_id=received.device or broute.DEVICE,
                             scaling=broute.Scaling.from_json(state))
    notice = (f"{decoded.unscaled} energy value(s) left out until D3/E1 are known" if decoded.unscaled else None)
    return Decoded(decoded.readings, decoded.scaling.to_json(), notice)


def _dsmr(received: Received, _state: bytes, config: Config) -> Decoded:
    return Decoded(dsmr.decode(received.payload, received_at=received.at, device_id=received.device,
                               keys=config.keys))


def _mqtt_json(received: Received, state: bytes, config: Config) -> Decoded:
    return Decoded(*mqtt_json.decode(received.payload, received_at=received.at, device_id=received.device,
                                     topic=received.origin, state=state, mappings=config.mappings))


# Subscription → driver: IAMMETER publishes on device/<SN>/realtime (IAMMETER/appstore docs); Acrel ADW3xx
# on platform/<vendor>/meter/json-v2/analog/<group>, the device id inside the payload (ADW3xx PDF); EVN P1
# readers (ESP8266) on sensors/smartmeter, the meter known by the system title in the frame; P1 readers that
# publish the raw DSMR telegram on `dsmr` (schnef/dsmr-mqtt) or `dsmr/<device>`. `mqtt_json` subscribes what
# the meters file's mappings name.
DRIVERS: Mapping[str, Driver] = MappingProxyType({
    iammeter.DRIVER: Driver(_stateless(iammeter.decode), routes=(Route("device/+/realtime", device_level=1),)),
    adw300.DRIVER: Driver(_stateless(adw300.decode), routes=(Route("platform/+/meter/json-v2/analog/+"),)),
    evn.DRIVER: Driver(_evn, routes=(Route("sensors/smartmeter"),)),
    broute.DRIVER: Driver(_broute, keep_state_on_error=True),  # `wattstream bridge broute`
    dsmr.DRIVER: Driver(_dsmr, routes=(Route("dsmr", device="dsmr"), Route("dsmr/+", device_level=1)),
                        framer=dsmr.TelegramFramer),  # and `wattstream bridge p1`
    lines.DRIVER: Driver(_stateless(lines.decode), framer=lines.LineFramer),  # `wattstream bridge serial`
    reading.DRIVER: Driver(_stateless(reading.decode)),  # produced to Kafka by other programs
    mqtt_json.DRIVER: Driver(_mqtt_json, keep_state_on_error=True),
})


def routes(config: Config) -> dict[str, tuple[str, Route]]:
    """MQTT subscription → (driver, route): the drivers' own, then the meters file's JSON mappings (a
    subscription taken already is a configuration error)."""
    table = {route.pattern: (name, route) for name, driver in DRIVERS.items() for route in driver.routes}
    for route in mqtt_json_mapping.routes(config.mappings):
        if route.pattern in table:
            raise ValueError(f"mqtt_json: the topic {route.pattern} is {table[route.pattern][0]}'s already")
        table[route.pattern] = (mqtt_json.DRIVER, route)
    return table


class Router:
    """MQTT topic → (driver, record key) by the subscriptions of `routes`, looked up once per topic (the
    MQTT bridge, `wattstream decode --topics`)."""

    def __init__(self, config: Config) -> None:
        self.table = routes(config)
        self.drivers = sorted({driver for driver, _ in self.table.values()})
        self._found: dict[str, tuple[str, str] | None] = {}  # one per subscribed topic: bounded by the devices

    def route(self, topic: str) -> tuple[str, str] | None:
        if topic not in self._found:
            self._found[topic] = next(((driver, route.key(topic)) for driver, route in self.table.values()
                                       if route.matches(topic)), None)
        return self._found[topic]
