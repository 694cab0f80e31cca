"""What `wattstream run` shows in the terminal: a status block every few seconds of what flows through
`meter.readings`, `power.surplus` and `meter.deadletter`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from pipeline import topics
from pipeline.models import Reading, SurplusSignal
from pipeline.retry import Backoff

STATUS_EVERY = 5.0


class LiveView:
    """Counts what the pipeline produces and prints a short status block every few seconds."""

    def __init__(self, sink: str) -> None:
        self.sink = sink
        self.readings = 0
        self.last: dict[str, Reading] = {}
        self.dead: Counter[str] = Counter()
        self.surplus: dict[str, SurplusSignal] = {}
        self._since = (time.monotonic(), 0)

    def on_reading(self, value: bytes) -> None:
        self.readings += 1
        reading = Reading.from_json(value)
        if reading.total.power_w is not None:  # Acrel's second message of a pair has no power
            self.last[reading.meter_id] = reading

    def on_surplus(self, value: bytes) -> None:
        signal = SurplusSignal.from_json(value)
        self.surplus[signal.site] = signal

    def on_dead(self, headers: dict[str, bytes]) -> None:
        self.dead[headers.get(topics.H_STAGE, b"?").decode()] += 1

    def render(self) -> str:
        now = time.monotonic()
        then, count = self._since
        rate = (self.readings - count) / max(now - then, 1e-9)
        self._since = (now, self.readings)
        dead = ", ".join(f"{stage} {n}" for stage, n in self.dead.items()) or "0"
        lines = [f"{time.strftime('%H:%M:%S')}  readings {self.readings} ({rate:.1f}/s) → {self.sink}"
                 f"   dead letters {dead}"]
        width = max(map(len, self.last), default=0)
        for meter_id, reading in sorted(self.last.items()):
            total = reading.total
            phases = " ".join(f"{p} {v.power_w:+.0f} W" for p, v in reading.phases.items()
                              if v.power_w is not None)
            power = f"{total.power_w:+8.0f} W" if total.power_w is not None else "       ? W"
            energy = (f"  in {total.energy_import_wh / 1000:.3f} kWh" if total.energy_import_wh is not None
                      else "")
            lines.append(f"    {meter_id:<{width}} {power}{energy}  {phases}  @ {reading.ts:%H:%M:%S}")
        for site, s in sorted(self.surplus.items()):
            battery = f", battery {s.battery_soc:.0f} %" if s.battery_soc is not None else ""
            lines.append(f"    site {site}: surplus {s.surplus_w:+.0f} W{battery}")
            for name, c in s.chargers.items():
                car = f"charging {c.phases}p {c.current_a:.0f} A ({c.power_w:.0f} W)" if c.charge else "not charging"
                lines.append(f"      {name} ({c.mode}): {car} — {c.reason}")
        return "\n".join(lines)


async def watch(bootstrap: str, view: LiveView) -> None:
    """Feed `view` from Kafka until cancelled."""
    consumer = AIOKafkaConsumer(topics.READINGS, topics.SURPLUS, topics.DEADLETTER, bootstrap_servers=bootstrap,
                                auto_offset_reset="latest", enable_auto_commit=False)
    backoff = Backoff(1.0, 1.0)  # the embedded Kafka is starting: it answers within seconds
    while True:
        try:
            await consumer.start()
            break
        except KafkaError:
            await asyncio.sleep(backoff.next())
    try:
        while True:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for record in records:
                    if tp.topic == topics.READINGS:
                        view.on_reading(record.value)
                    elif tp.topic == topics.SURPLUS:
                        view.on_surplus(record.value)
                    else:
                        view.on_dead(dict(record.headers))
    finally:
        await consumer.stop()


async def show(view: LiveView, exited: Callable[[], list[str]], stop: asyncio.Event) -> None:
    """Print the status every `STATUS_EVERY` seconds; stop the run when a child exited by itself."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), STATUS_EVERY)
        print(view.render(), flush=True)
        for name in exited():
            print(f"!! {name} exited by itself; see its log", flush=True)
            stop.set()
