"""Line sensors end to end over a pseudo-terminal: simulated Arduino → `wattstream bridge serial` →
Tansu → worker → InfluxDB, including an unplug/replug of the adapter (the port path is a symlink that
moves to a new pty, as udev's /dev/serial/by-id links do)."""

import os
import time
from pathlib import Path

from tests.conftest import Stack


class SimulatedArduino:
    """The device end of a pty pair; `port` is where the bridge opens it."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.plug()

    def plug(self) -> None:
        self.master, slave = os.openpty()
        self.slave_name = os.ttyname(slave)
        os.close(slave)
        tmp = self.link.with_suffix(".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self.slave_name)
        tmp.replace(self.link)

    def unplug(self) -> None:
        os.close(self.master)
        self.link.unlink()

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())


def test_lines_reach_influxdb_and_survive_a_replug(stack: Stack) -> None:
    arduino = SimulatedArduino(stack.workdir / "ttyUSB0")
    worker = stack.start("worker", "worker")
    bridge = stack.start("serial", "bridge", "serial", "--port", str(arduino.link), "--device", "bench1")
    bridge.wait_for("reading line sensors on")
    worker.wait_for("Worker]: Ready")

    arduino.send("# boot message\r\ngreenhouse,temperature_c,21")
    arduino.send(".5\r\n{\"unit\": \"shed\", \"humidity_pct\": 40.5, \"power_w\": 12}\r\nnot,a\r\n")
    influx = stack.influx
    rows = influx.wait_rows("SELECT * FROM readings WHERE driver = 'lines'", count=2)
    by_meter = {row["meter"]: row for row in rows}
    assert by_meter["lines:greenhouse"]["temperature_c"] == 21.5
    assert by_meter["lines:shed"]["humidity_pct"] == 40.5 and by_meter["lines:shed"]["power_w"] == 12

    arduino.unplug()
    bridge.wait_for("re-opening", timeout=30)
    time.sleep(1)
    arduino.plug()
    deadline = time.monotonic() + 60
    while bridge.output().count("reading line sensors on") < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert bridge.output().count("reading line sensors on") == 2, bridge.output()
    arduino.send("greenhouse,temperature_c,22.25\n")
    rows = influx.wait_rows("SELECT temperature_c FROM readings WHERE meter = 'lines:greenhouse'", count=2)
    assert [row["temperature_c"] for row in rows] == [21.5, 22.25]
    os.close(arduino.master)
