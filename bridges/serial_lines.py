"""Serial → Kafka bridge for line sensors (pyserial): reads a port, cuts it into lines, produces each
line unchanged to `meter.raw.lines` (key = the configured device name, origin = the port).

Reconnect is outside the read loop: an unplugged or vanished port (SerialException/OSError) is closed
and re-opened with back-off (1 s … 30 s), so a replugged adapter is picked up again. Every line goes
through the on-disk spool (`bridges/spool.py`), so a Kafka outage or a bridge restart loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import serial

from bridges.kafka import RawProducer
from bridges.spool import Record, Spool, deliver_spool, stop_sender
from pipeline.drivers.lines import DRIVER, LineFramer

log = logging.getLogger(__name__)


class SerialLineBridge:
    def __init__(self, port: str, baudrate: int, device: str | None, producer: RawProducer, spool: Spool) -> None:
        self._port = port
        self._baudrate = baudrate
        self._key = device or port
        self._producer = producer
        self._spool = spool

    async def _read_port(self, port: serial.Serial, stop: asyncio.Event) -> None:
        framer = LineFramer()
        while not stop.is_set():
            chunk = await asyncio.to_thread(port.read, max(1, port.in_waiting))
            for line in framer.feed(chunk):
                self._spool.append(Record(DRIVER, self._key, self._port, datetime.now(UTC), line))

    async def run(self, stop: asyncio.Event) -> None:
        sender = asyncio.create_task(deliver_spool(self._spool, self._producer, [DRIVER], stop))
        delay = 1.0
        try:
            while not stop.is_set():
                try:
                    port = await asyncio.to_thread(serial.Serial, self._port, self._baudrate, timeout=0.5)
                except (serial.SerialException, OSError) as exc:
                    log.warning("cannot open %s (%s), retry in %.0fs", self._port, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                log.info("reading line sensors on %s at %d baud", self._port, self._baudrate)
                delay = 1.0
                try:
                    await self._read_port(port, stop)
                except (serial.SerialException, OSError) as exc:
                    log.warning("lost %s (%s); re-opening", self._port, exc)
                finally:
                    port.close()
        finally:
            await stop_sender(sender)
