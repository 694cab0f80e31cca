"""B-route bridge: drives a Wi-SUN dongle (Tessera RL7023 Stick-D/DSS or /IPS, ROHM BP35A1 family) over
a serial port with SKSTACK IP and produces every ECHONET Lite frame the smart meter sends to
`meter.raw.broute` unchanged (key = the configured device name, origin = the port).

Session (kjmat/keilog `BrouteReader`, SKSTACK IP command reference; see tests/frames/broute/README.md):
SKVER → ROPT/WOPT (hex ERXUDP; the IPS answers ROPT with ER04: hex only) → SKSETPWD/SKSETRBID →
SKSCAN (DSS appends the side `0`) until a PAN is found → SKSREG S2/S3 → SKLL64 → SKJOIN, waiting for
EVENT 25 (EVENT 24 = failed) → poll: each EPC group on its own cycle with SKSENDTO (DSS: side field
`0` before the length) and forward every ERXUDP from the meter (IPS: 9 fields, DSS: 10).
Recovery: EVENT 24/29 (session lost or expired), no frame for `silence_timeout`, or a dongle that stops
answering → the session starts again (SKTERM, scan cache kept); a serial error (unplug) → the port is
closed and re-opened with back-off. The password and ID are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

import serial

from bridges.kafka import RawProducer
from bridges.spool import RawRecord, Spool, deliver_spool, stop_sender
from pipeline.drivers import broute
from pipeline.errors import ConfigError, WattstreamError
from pipeline.retry import Backoff
from pipeline.settings import BrouteSettings

log = logging.getLogger(__name__)

ECHONET_PORT: Final = "0E1A"
Variant = Literal["dss", "ips"]


class SessionLost(WattstreamError):
    """The PANA session is gone or the dongle stopped answering: start a new session."""


@dataclass(frozen=True)
class Pan:
    channel: str
    pan_id: str
    addr: str


def parse_erxudp(line: str) -> tuple[str, bytes] | None:
    """`ERXUDP <src> <dst> <rport> <lport> <mac> <secured> [<side>] <len> <data>` → (src, data) for
    ECHONET Lite datagrams (port 0E1A); hex or binary-as-text data told apart by the length field."""
    fields = line.split(" ")
    if fields[0] != "ERXUDP" or len(fields) not in (9, 10) or fields[3] != ECHONET_PORT:
        return None
    try:
        length = int(fields[-2], 16)
        data = bytes.fromhex(fields[-1]) if len(fields[-1]) == 2 * length else fields[-1].encode("latin-1")
    except ValueError:
        return None
    return (fields[1], data) if len(data) == length else None


def sendto(variant: Variant, address: str, frame: bytes) -> bytes:
    side = " 0" if variant == "dss" else ""
    return f"SKSENDTO 1 {address} {ECHONET_PORT} 1{side} {len(frame):04X} ".encode() + frame


class BrouteSession:
    """One dongle on one port. `run(stop, emit)` blocks (run it in a thread) and calls `emit(frame)`
    for every ECHONET Lite frame from the meter."""

    def __init__(self, port: str, settings: BrouteSettings, baudrate: int = 115200) -> None:
        if not (settings.id and settings.id.get_secret_value()) or not (
                settings.password and settings.password.get_secret_value()):  # unset, or empty in .env
            raise ConfigError("the B-route bridge needs WATTSTREAM_BROUTE_ID and WATTSTREAM_BROUTE_PASSWORD")
        self._port_name = port
        self._settings = settings
        self._baudrate = baudrate
        self._serial: serial.Serial | None = None
        self._pan: Pan | None = None  # kept across sessions: rejoining needs no new scan
        self._tid = 0
        self.joins = 0

    # line I/O -----------------------------------------------------------------------------------
    def _write(self, data: bytes, shown: str | None = None) -> None:
        assert self._serial is not None
        log.debug(">> %s", shown or data[:60])
        self._serial.write(data if data.endswith(b"\r\n") or data.startswith(b"SKSENDTO") else data + b"\r\n")

    def _line(self, timeout: float) -> str | None:
        assert self._serial is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = self._serial.readline()
            if raw:
                line = raw.decode("latin-1").strip()
                if line:
                    log.debug("<< %s", line[:120])
                    return line
        return None

    def _command(self, command: str, expect: str = "OK", timeout: float = 5.0, shown: str | None = None) -> str:
        """Send a command, return the first line starting with `expect` (echo lines are skipped)."""
        self._write(command.encode(), shown or command)
        deadline = time.monotonic() + timeout
        while (line := self._line(max(0.0, deadline - time.monotonic()))) is not None:
            if line.startswith(expect):
                return line
            if line.startswith("FAIL ER") and not expect.startswith("FAIL"):
                raise SessionLost(f"{(shown or command).split(' ')[0]} answered {line}")
        raise SessionLost(f"no {expect!r} after {(shown or command).split(' ')[0]} within {timeout:.0f}s")

    # session steps ----------------------------------------------------------------------------------
    def _setup(self) -> None:
        version = self._command("SKVER", expect="EVER")
        log.info("dongle %s (%s firmware)", version.removeprefix("EVER ").strip(), self._settings.variant)
        self._write(b"ROPT")
        answer = self._line(3.0) or ""
        if answer == "ROPT":
            answer = self._line(3.0) or ""
        if answer.startswith("OK 00"):  # binary ERXUDP: switch to hex (stored in the dongle's flash)
            self._command("WOPT 01")
        assert self._settings.password is not None and self._settings.id is not None
        self._command(f"SKSETPWD C {self._settings.password.get_secret_value()}", shown="SKSETPWD C ****")
        self._command(f"SKSETRBID {self._settings.id.get_secret_value()}", shown="SKSETRBID ****")

    def _scan(self) -> Pan:
        side = " 0" if self._settings.variant == "dss" else ""
        for duration in (6, 7, 8):
            self._write(f"SKSCAN 2 FFFFFFFF {duration}{side}".encode())
            found: dict[str, str] = {}
            deadline = time.monotonic() + 2 ** duration * 0.01 * 28 + 10
            while (line := self._line(max(0.0, deadline - time.monotonic()))) is not None:
                if line.startswith("EVENT 22"):
                    break
                key, sep, value = line.partition(":")
                if sep and key.strip() in ("Channel", "Pan ID", "Addr"):
                    found[key.strip()] = value.strip()
            if {"Channel", "Pan ID", "Addr"} <= found.keys():
                return Pan(found["Channel"], found["Pan ID"], found["Addr"])
            log.warning("no smart meter found by a scan of duration %d", duration)
        raise SessionLost("no smart meter answered the scans")

    def _join(self) -> str:
        if self._pan is None:
            self._pan = self._scan()
            log.info("found PAN %s on channel %s", self._pan.pan_id, self._pan.channel)
        self._command(f"SKSREG S2 {self._pan.channel}")
        self._command(f"SKSREG S3 {self._pan.pan_id}")
        address = self._command(f"SKLL64 {self._pan.addr}", expect="FE80", timeout=3.0)
        self._write(f"SKJOIN {address}".encode())
        deadline = time.monotonic() + 60
        while (line := self._line(max(0.0, deadline - time.monotonic()))) is not None:
            if line.startswith("EVENT 25"):
                self.joins += 1
                log.info("joined the smart meter (PANA session %d)", self.joins)
                return address
            if line.startswith("EVENT 24"):
                self._pan = None  # scan again next time
                raise SessionLost("SKJOIN failed (EVENT 24): check the B-route ID and password")
        raise SessionLost("no answer to SKJOIN within 60s")

    def _poll(self, address: str, stop: threading.Event, emit: Callable[[bytes], None]) -> None:
        # longest cycle first: the scaling group (D3/E1) is asked before the first E0 needs it
        polls = sorted(((tuple(int(epc, 16) for epc in epcs), cycle) for epcs, cycle in self._settings.polls),
                       key=lambda poll: -poll[1])
        last_sent = [0.0] * len(polls)
        last_frame = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            for i, (epcs, cycle) in enumerate(polls):
                if now - last_sent[i] >= cycle:
                    self._tid = (self._tid + 1) & 0xFFFF
                    self._write(sendto(self._settings.variant, address, broute.get_request(self._tid, epcs)),
                                f"SKSENDTO Get {' '.join(f'{e:02X}' for e in epcs)}")
                    last_sent[i] = now
            line = self._line(1.0)
            if line is None:
                if time.monotonic() - last_frame > self._settings.silence_timeout:
                    raise SessionLost(f"no frame from the meter for {self._settings.silence_timeout:.0f}s")
                continue
            if line.startswith(("EVENT 24", "EVENT 29")):
                raise SessionLost(f"session lost ({line.split(' ')[0]} {line.split(' ')[1]})")
            received = parse_erxudp(line)
            if received is not None:
                _, frame = received
                if frame[4:7] == broute.SMART_METER:
                    last_frame = time.monotonic()
                    emit(frame)

    # the loop with the reconnect outside ----------------------------------------------------------
    def run(self, stop: threading.Event, emit: Callable[[bytes], None]) -> None:
        backoff = Backoff()
        while not stop.is_set():
            try:
                self._serial = serial.Serial(self._port_name, self._baudrate, timeout=0.5)
            except (serial.SerialException, OSError) as exc:
                wait = backoff.next()
                log.warning("cannot open %s (%s), retry in %.0fs", self._port_name, exc, wait)
                stop.wait(wait)
                continue
            try:
                while not stop.is_set():
                    try:
                        self._setup()
                        address = self._join()
                        backoff.reset()
                        self._poll(address, stop, emit)
                    except SessionLost as exc:
                        log.warning("B-route session: %s; starting again", exc)
                        self._write(b"SKTERM")
                        stop.wait(backoff.next())
            except (serial.SerialException, OSError) as exc:
                log.warning("lost %s (%s); re-opening", self._port_name, exc)
            finally:
                self._serial.close()
                self._serial = None


async def run_broute_bridge(session: BrouteSession, producer: RawProducer, spool: Spool, key: str, origin: str,
                            stop: asyncio.Event) -> None:
    """The session in its own thread (blocking serial I/O) writes every frame to the spool; the spool
    is delivered to Kafka in order."""
    sender = asyncio.create_task(deliver_spool(spool, producer, [broute.DRIVER], stop))
    loop = asyncio.get_running_loop()
    halt = threading.Event()

    def emit(frame: bytes) -> None:
        loop.call_soon_threadsafe(spool.append, RawRecord(broute.DRIVER, key, origin, datetime.now(UTC), frame))

    thread = threading.Thread(target=session.run, name="broute-session", daemon=True, args=(halt, emit))
    thread.start()
    try:
        await stop.wait()
    finally:
        halt.set()
        await asyncio.to_thread(thread.join, 10)
        await stop_sender(sender)
