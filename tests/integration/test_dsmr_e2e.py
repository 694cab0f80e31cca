"""DSMR P1 end to end through the real parts, the three ways a telegram arrives: a serial P1 cable (a
pty; garbage, split reads and a telegram with a bad CRC), a network P1 dongle serving the raw stream
on a TCP port (a local server), and an ESP reader publishing each telegram on MQTT — each through its
bridge, Tansu and the worker into InfluxDB; the bad telegram to the dead letters."""

from __future__ import annotations

import asyncio
import socket
import threading

from pipeline import topics
from tests.conftest import Stack
from tests.frames import FRAMES
from tests.integration.test_serial_lines_e2e import SimulatedArduino
from tests.kafka import deadletters
from tests.mqtt import publish_all

V5, V4, V2 = ((FRAMES / "dsmr" / f"{name}.txt").read_bytes() for name in ("v5", "v4_2", "v2_2"))


class Dongle:
    """A network P1 dongle: serves the meter's byte stream to whoever connects (ser2net-style)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.done = threading.Event()
        threading.Thread(target=self._serve, args=(chunks,), daemon=True).start()

    def _serve(self, chunks: list[bytes]) -> None:
        connection, _ = self.server.accept()
        with connection:
            for chunk in chunks:
                connection.sendall(chunk)
            self.done.wait(120)  # the connection stays up, as a dongle's does

    def close(self) -> None:
        self.done.set()
        self.server.close()


def test_p1_over_serial_tcp_and_mqtt_reaches_influxdb(stack: Stack) -> None:
    cable = SimulatedArduino(stack.workdir / "ttyUSB-P1")
    dongle = Dongle([b"\x00\xffnoise", V4[:100], V4[100:]])
    try:
        worker, _ = stack.start_pipeline()
        serial = stack.start("p1-serial", "bridge", "p1", "--port", str(cable.link), "--device", "meterkast",
                             "--spool", str(stack.workdir / "spool-serial"))
        tcp = stack.start("p1-tcp", "bridge", "p1", "--port", f"tcp://127.0.0.1:{dongle.port}",
                          "--spool", str(stack.workdir / "spool-tcp"))
        serial.wait_for(f"reading {cable.link} at 115200 baud 8N1")
        tcp.wait_for(f"reading tcp://127.0.0.1:{dongle.port}")
        broken = V5.replace(b"(00.244*kW)", b"(00.245*kW)")  # its CRC no longer matches
        for chunk in (b"\r\n!garbage/", V5[:37], V5[37:300], V5[300:], broken):
            cable.send(chunk.decode())
        publish_all(stack.mosquitto.port, [("dsmr/attic", V2)])

        rows = stack.influx.wait_rows('SELECT * FROM readings WHERE driver = \'dsmr\' GROUP BY "meter", "phase"',
                                      count=4 + 1 + 4 + 1 + 1 + 1)
        by_scope = {(row["meter"], row["phase"]): row for row in rows}
        v5 = "dsmr:K8EG004046395507"
        assert by_scope[v5, "total"]["power_w"] == 244.0 and by_scope[v5, "total"]["energy_import_wh"] == 6825
        assert by_scope[v5, "total"]["energy_import_t1_wh"] == 4426.0 and by_scope[v5, "total"]["tariff"] == 2.0
        assert by_scope[v5, "L3"]["voltage_v"] == 229.0 and by_scope[v5, "L3"]["current_a"] == 0.86
        assert by_scope[f"{v5}-gas", "total"]["volume_m3"] == 0.107
        v4 = "dsmr:3960221976967177082151037881335713"
        assert by_scope[v4, "L2"]["power_w"] == 1247.0 and by_scope[f"{v4}-gas", "total"]["volume_m3"] == 981.443
        assert by_scope["dsmr:00000000000000", "total"]["energy_export_wh"] == 2002
        assert by_scope["dsmr:00000000000000-gas", "total"]["volume_m3"] == 1.001
        assert len({meter for meter, _ in by_scope}) == 6  # the broken telegram wrote nothing
        [(value, headers)] = asyncio.run(deadletters(stack.tansu.address, b"meterkast"))
        assert value == broken and (headers[topics.H_STAGE], headers[topics.H_REASON]) == (b"frame", b"checksum")
        assert worker.proc.poll() is None
    finally:
        dongle.close()
