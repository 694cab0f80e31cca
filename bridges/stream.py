"""Byte stream → Kafka for the drivers that frame a stream (`Driver.framer`): line sensors on a serial
port (`wattstream bridge serial`), DSMR P1 ports on a serial port or behind a network dongle that serves
the raw telegrams on a TCP port, ser2net-style (`wattstream bridge p1`). The stream is cut into payloads
by the driver's framer (garbage and split reads survive it) and each payload is produced unchanged to
`meter.raw.<driver>` (key = the configured device name, else the port; origin = the port).

Reconnect is outside the read loop: an unplugged or vanished port, or a dropped TCP connection
(SerialException/OSError), is closed and opened again with back-off (1 s … 30 s). Every payload goes
through the on-disk spool (`bridges/spool.py`), so a Kafka outage or a bridge restart loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import serial

from bridges.kafka import RawProducer
from bridges.spool import RawRecord, Spool, deliver_spool, stop_sender
from pipeline.drivers import DRIVERS
from pipeline.retry import Backoff

log = logging.getLogger(__name__)
READ_BYTES = 4096
CONNECT_SECONDS = 10.0


@dataclass(frozen=True)
class Port:
    """A serial device (`/dev/ttyUSB0`) at a baud rate and character format, or `tcp://host:port`."""

    name: str
    baudrate: int = 115200
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E"] = "N"
    # TCP: nothing for this long means a half-open connection (a P1 meter sends every 1-10 s); None: wait
    silence_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.name.startswith("tcp://"):
            host, _, port = self.name.removeprefix("tcp://").rpartition(":")
            if not host or not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
                raise ValueError(f"{self.name}: a network port is tcp://HOST:PORT")

    @property
    def tcp(self) -> tuple[str, int] | None:
        if not self.name.startswith("tcp://"):
            return None
        host, _, port = self.name.removeprefix("tcp://").rpartition(":")
        return host.strip("[]"), int(port)


async def _serial_chunks(port: Port, stop: asyncio.Event) -> AsyncIterator[bytes]:
    device = await asyncio.to_thread(serial.Serial, port.name, port.baudrate, bytesize=port.bytesize,
                                     parity=port.parity, timeout=0.5)
    log.info("reading %s at %d baud %d%s1", port.name, port.baudrate, port.bytesize, port.parity)
    try:
        while not stop.is_set():
            yield await asyncio.to_thread(device.read, max(1, device.in_waiting))
    finally:
        device.close()


async def _tcp_chunks(address: tuple[str, int], silence: float | None, stop: asyncio.Event) -> AsyncIterator[bytes]:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), CONNECT_SECONDS)
    except TimeoutError as exc:
        raise ConnectionError(f"no answer within {CONNECT_SECONDS:.0f} s") from exc
    log.info("reading tcp://%s:%d", *address)
    loop = asyncio.get_running_loop()
    last = loop.time()
    try:
        while not stop.is_set():
            try:
                chunk = await asyncio.wait_for(reader.read(READ_BYTES), timeout=0.5)
            except TimeoutError:
                if silence is not None and loop.time() - last > silence:
                    raise ConnectionError(f"nothing for {silence:.0f} s") from None
                continue
            if not chunk:
                raise ConnectionResetError("the dongle closed the connection")
            last = loop.time()
            yield chunk
    finally:
        writer.close()


class StreamBridge:
    def __init__(self, driver: str, port: Port, device: str | None, producer: RawProducer, spool: Spool) -> None:
        framer = DRIVERS[driver].framer
        if framer is None:
            raise ValueError(f"driver {driver} reads no byte stream")
        self._driver, self._framer, self._port = driver, framer, port
        self._key = device or port.name
        self._producer = producer
        self._spool = spool
        self._backoff = Backoff()  # before opening the port again

    async def _read(self, stop: asyncio.Event) -> None:
        framer = self._framer()
        tcp = self._port.tcp
        chunks = _tcp_chunks(tcp, self._port.silence_seconds, stop) if tcp else _serial_chunks(self._port, stop)
        async for chunk in chunks:
            if chunk:  # bytes came: the next loss waits from the start of the back-off again
                self._backoff.reset()
            for payload in framer.feed(chunk):
                self._spool.append(RawRecord(self._driver, self._key, self._port.name, datetime.now(UTC), payload))

    async def run(self, stop: asyncio.Event) -> None:
        sender = asyncio.create_task(deliver_spool(self._spool, self._producer, [self._driver], stop))
        try:
            while not stop.is_set():
                try:
                    await self._read(stop)
                except (serial.SerialException, OSError) as exc:
                    wait = self._backoff.next()
                    log.warning("%s: %s; opening it again in %.0fs", self._port.name, exc, wait)
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=wait)
                    except TimeoutError:
                        pass
        finally:
            await stop_sender(sender)
