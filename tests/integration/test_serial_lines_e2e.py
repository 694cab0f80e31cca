"""Line sensors end to end over a pseudo-terminal: simulated Arduino → `wattstream bridge serial` →
Tansu → worker → InfluxDB, including an unplug/replug of the adapter (the port path is a symlink that
moves to a new pty, as udev's /dev/serial/by-id links do)."""

import asyncio
import os
import time
from pathlib import Path

from pipeline import topics
from pipeline.drivers.lines import MAX_LINE
from tests.conftest import Stack
from tests.kafka import deadletters
from wattstream.embedded.servers import start_tansu


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
    bridge.wait_for(f"reading {arduino.link} at")
    worker.wait_for("Worker]: Ready")

    arduino.send("\x55" * 3000 + "\r\n")  # noise without line ends (a wrong baud rate): a dead letter
    arduino.send("# boot message\r\ngreenhouse,temperature_c,21")
    arduino.send(".5\r\n{\"unit\": \"shed\", \"humidity_pct\": 40.5, \"power_w\": 12}\r\nnot,a\r\n")
    influx = stack.influx
    rows = influx.wait_rows("SELECT * FROM readings WHERE driver = 'lines'", count=2)
    by_meter = {row["meter"]: row for row in rows}
    assert by_meter["lines:greenhouse"]["temperature_c"] == 21.5
    assert by_meter["lines:shed"]["humidity_pct"] == 40.5 and by_meter["lines:shed"]["power_w"] == 12
    (value, headers), *_ = asyncio.run(deadletters(stack.tansu.address, b"bench1"))
    assert value == b"\x55" * (MAX_LINE + 1) and headers[topics.H_STAGE] == b"frame"
    assert f"longer than {MAX_LINE} bytes".encode() in headers[topics.H_ERROR]

    arduino.unplug()
    bridge.wait_for("opening it again", timeout=30)
    time.sleep(1)
    arduino.plug()
    deadline = time.monotonic() + 60
    while bridge.output().count(f"reading {arduino.link} at") < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert bridge.output().count(f"reading {arduino.link} at") == 2, bridge.output()
    arduino.send("greenhouse,temperature_c,22.25\n")
    rows = influx.wait_rows("SELECT temperature_c FROM readings WHERE meter = 'lines:greenhouse'", count=2)
    assert [row["temperature_c"] for row in rows] == [21.5, 22.25]
    os.close(arduino.master)


def test_lines_read_while_kafka_is_down_and_across_a_bridge_restart_all_arrive(stack: Stack) -> None:
    """Edge resilience: Kafka unreachable, the bridge spools; the bridge restarts; Kafka returns."""
    arduino = SimulatedArduino(stack.workdir / "ttyACM0")
    kafka_port = stack.tansu.port
    stack.tansu.stop()  # the link is down from the start
    spool_args = ["--spool", str(stack.workdir / "spool")]
    first = stack.start("serial1", "bridge", "serial", "--port", str(arduino.link), "--device", "pi", *spool_args)
    first.wait_for(f"reading {arduino.link} at")
    arduino.send("".join(f"pi,counter,{i}\n" for i in range(5)))
    deadline = time.monotonic() + 20
    while sum(p.stat().st_size for p in (stack.workdir / "spool").glob("*.seg")) < 5 * 40 and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    assert first.stop() == 0  # a restart of the bridge while Kafka is still away
    second = stack.start("serial2", "bridge", "serial", "--port", str(arduino.link), "--device", "pi", *spool_args)
    second.wait_for(f"reading {arduino.link} at")
    arduino.send("".join(f"pi,counter,{i}\n" for i in range(5, 8)))
    time.sleep(1)

    stack.tansu = start_tansu(stack.workdir / "tansu-back", port=kafka_port)  # the link returns
    stack.env["WATTSTREAM_KAFKA_BOOTSTRAP"] = stack.tansu.address
    worker = stack.start("worker", "worker")
    worker.wait_for("Worker]: Ready")
    rows = stack.influx.wait_rows("SELECT counter FROM readings WHERE meter = 'lines:pi'", count=8, timeout=90)
    assert [row["counter"] for row in rows] == [float(i) for i in range(8)]  # all, in order
    os.close(arduino.master)
    stack.stop()  # before this test's own Tansu: a worker stopping without Kafka waits out its timeouts
    stack.tansu.stop()
