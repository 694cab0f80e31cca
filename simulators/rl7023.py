"""A simulated Tessera RL7023 Stick-D (DSS or IPS firmware) with a low-voltage smart meter behind it,
on the device end of a pseudo-terminal: answers SKSTACK IP commands as the real dongle does (echo off,
CRLF lines, scan results, join events, hex ERXUDP) and answers ECHONET Lite Gets for any EPC asked.
`drop()` ends the PANA session the way a meter does (EVENT 29), `mute` makes the dongle stop answering.
Used by the tests and the embedded run."""

from __future__ import annotations

import math
import os
import random
import threading
import time
from typing import Literal

from pipeline.drivers import broute

METER_MAC = "001D129012345678"
METER_IPV6 = "FE80:0000:0000:0000:021D:1290:1234:5678"
PAN = {"Channel": "21", "Channel Page": "09", "Pan ID": "8888", "Addr": METER_MAC, "LQI": "E1", "PairID": "AABBCCDD"}


class SimulatedRl7023:
    def __init__(self, fd: int, variant: Literal["dss", "ips"] = "dss", route_id: str = "0" * 32,
                 password: str = "PASSWORD0123") -> None:
        self.fd = fd
        self.variant = variant
        self.route_id, self.password = route_id, password
        self.mute = False
        self.joined = False
        self.gets = 0
        self._credentials: dict[str, str] = {}
        self._import_raw = 123456  # counts of D3 (1) * E1 (0.1 kWh)
        self._rng = random.Random(3)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="rl7023-sim", daemon=True)

    def start(self) -> SimulatedRl7023:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def drop(self) -> None:
        """The meter ends the session (lifetime expired)."""
        self.joined = False
        self._send(f"EVENT 29 {METER_IPV6}")

    # I/O --------------------------------------------------------------------------------------------
    def _send(self, *lines: str) -> None:
        if self.mute:
            return
        try:
            os.write(self.fd, "".join(f"{line}\r\n" for line in lines).encode())
        except OSError:
            pass

    def _serve(self) -> None:
        buf = b""
        while not self._stop.is_set():
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                time.sleep(0.05)
                continue
            buf += chunk
            while True:
                if buf.startswith(b"SKSENDTO"):
                    consumed = self._sendto(buf)
                    if consumed == 0:
                        break
                    buf = buf[consumed:]
                    continue
                end = buf.find(b"\r\n")
                if end < 0:
                    break
                line, buf = buf[:end].decode("latin-1"), buf[end + 2:]
                if line:
                    self._command(line)

    # SKSTACK ----------------------------------------------------------------------------------------
    def _command(self, line: str) -> None:
        words = line.split(" ")
        name = words[0]
        if name == "SKVER":
            self._send("EVER 1.2.10" if self.variant == "dss" else "EVER 1.2.8", "OK")
        elif name == "ROPT":
            self._send("OK 01" if self.variant == "dss" else "ER04")
        elif name in ("WOPT", "SKSREG", "SKTERM", "SKRESET"):
            self._send("OK")
        elif name == "SKSETPWD":
            self._credentials["password"] = words[-1]
            self._send("OK")
        elif name == "SKSETRBID":
            self._credentials["id"] = words[-1]
            self._send("OK")
        elif name == "SKSCAN":
            side = " 0" if self.variant == "dss" else ""
            desc = [f"  {key}:{value}" for key, value in PAN.items()]
            if self.variant == "dss":
                desc.insert(5, "  Side:0")
            self._send("OK", f"EVENT 20 {METER_IPV6}{side}", "EPANDESC", *desc, f"EVENT 22 {METER_IPV6}{side}")
        elif name == "SKLL64":
            self._send(METER_IPV6)
        elif name == "SKJOIN":
            ok = self._credentials == {"password": self.password, "id": self.route_id}
            self.joined = ok
            self._send("OK", f"EVENT 21 {METER_IPV6} 02", f"EVENT 02 {METER_IPV6}",
                       f"EVENT {'25' if ok else '24'} {METER_IPV6}")
        else:
            self._send("FAIL ER04")

    def _sendto(self, buf: bytes) -> int:
        """`SKSENDTO 1 <ip> 0E1A 1 [0] <LEN> <LEN bytes>`: bytes consumed, 0 while incomplete."""
        fields = 7 if self.variant == "dss" else 6
        head = buf.split(b" ", fields)
        if len(head) <= fields:
            return 0
        length = int(head[fields - 1], 16)
        start = sum(len(part) + 1 for part in head[:fields])
        if len(buf) < start + length:
            return 0
        self._answer(buf[start:start + length])
        return start + length

    def _answer(self, request: bytes) -> None:
        self._send(f"EVENT 21 {METER_IPV6} 00", "OK")
        if not self.joined:
            return
        frame = broute.parse_frame(request)
        self.gets += 1
        body = b"".join(bytes([epc, len(edt)]) + edt for epc, _ in frame.properties for edt in [self._edt(epc)])
        response = (broute.EHD + frame.tid.to_bytes(2, "big") + broute.SMART_METER + broute.CONTROLLER
                    + bytes([0x72, len(frame.properties)]) + body)
        side = " 0" if self.variant == "dss" else ""
        self._send(f"ERXUDP {METER_IPV6} FE80:0000:0000:0000:1034:5678:ABCD:EF01 0E1A 0E1A {METER_MAC} 1{side} "
                   f"{len(response):04X} {response.hex().upper()}")

    def _edt(self, epc: int) -> bytes:
        watts = int(600 + 300 * math.sin(time.time() / 120) + self._rng.gauss(0, 20))
        self._import_raw += 1
        values = {
            0xD3: (1).to_bytes(4, "big"), 0xD7: bytes([6]), 0xE1: bytes([0x01]),
            0xE7: watts.to_bytes(4, "big", signed=True),
            0xE8: (watts // 230 * 5).to_bytes(2, "big", signed=True) + (watts // 230 * 5).to_bytes(2, "big"),
            0xE0: self._import_raw.to_bytes(4, "big"), 0xE3: (4321).to_bytes(4, "big"),
        }
        return values.get(epc, b"")
