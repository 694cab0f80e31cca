"""`wattstream bench --latency --others N`: the load of N other meters, each publishing its IAMMETER payload
once a second, spread over the second.

The packets are MQTT 3.1.1 (QoS 0, as the meters publish) written once and sent over a plain socket: paho
would spend a fifth of a core of this machine on 1,000 publishes a second (measured: 17 to 24 %), and the
load on the machine is to be the pipeline's, not the simulator's."""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import datetime

from simulators.meters import SimulatedIammeter

CONNACK_ACCEPTED = b"\x20\x02\x00\x00"
DISCONNECT = b"\xe0\x00"


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def connect_packet(client_id: str) -> bytes:
    """CONNECT, clean session, no keep-alive (the broker never times the connection out)."""
    body = _string("MQTT") + bytes([4, 0x02]) + (0).to_bytes(2, "big") + _string(client_id)
    return b"\x10" + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes) -> bytes:
    """PUBLISH at QoS 0, not retained."""
    body = _string(topic) + payload
    return b"\x30" + _remaining_length(len(body)) + body


def others(port: int, count: int, stop: threading.Event) -> None:
    """`count` meters publishing to the broker on `port` until `stop`, each the same payload every time."""
    if not count:
        return
    meters = [SimulatedIammeter(f"L{i:07d}", phases=3 if i % 2 else 1, seed=i) for i in range(count)]
    packets = [publish_packet(f"device/{m.sn}/realtime", m.payload(datetime.now().astimezone(), 1.0))
               for m in meters]
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(connect_packet(f"bench-others-{os.getpid()}"))
        answer = sock.recv(4, socket.MSG_WAITALL)
        if answer != CONNACK_ACCEPTED:
            raise ConnectionError(f"the MQTT broker refused the load generator: {answer!r}")
        started, i = time.monotonic(), 0
        while not stop.is_set():
            due = int((time.monotonic() - started) * count) + 1  # publishes due by now (the first at 0 s)
            if due <= i:
                time.sleep((i + 1 - due) / count)
                continue
            sock.sendall(b"".join(packets[j % count] for j in range(i, due)))
            i = due
        sock.sendall(DISCONNECT)
