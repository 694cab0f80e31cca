"""What the embedded Kafka (Tansu 0.6, in memory) costs as it fills: its CPU while 500 records/s are
produced to a topic and read by one consumer at its end, with the topic empty, holding many megabytes in
few large record batches, and holding many small record batches (what a pipeline at a low rate leaves:
about one batch per reading).

    .venv/bin/python scripts/tansu-batches.py [--batches 40000] [--mb 150]

Each case starts a Tansu of its own. The figures are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from wattstream.embedded.servers import start_tansu

TOPIC = "live"
SECONDS = 30


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def fill(address: str, batches: int, mb: int) -> None:
    """`batches` record batches of one record each, or `mb` MB in batches of up to 512 KB."""
    producer = AIOKafkaProducer(bootstrap_servers=address, linger_ms=0 if batches else 20,
                                max_batch_size=512 * 1024)
    await producer.start()
    try:
        for _ in range(batches):
            await (await producer.send(TOPIC, b"x" * 600))  # delivered before the next: a batch each
        for _ in range(mb * 1024):
            await producer.send(TOPIC, b"x" * 1024)
        await producer.flush()
    finally:
        await producer.stop()


async def steady(address: str, pid: int) -> float:
    """Tansu's CPU, in % of a core, over `SECONDS` of 500 records/s produced and read at the end."""
    producer = AIOKafkaProducer(bootstrap_servers=address, linger_ms=5)
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=address, auto_offset_reset="latest", fetch_max_wait_ms=100)
    await producer.start()
    await consumer.start()

    async def read() -> None:
        while True:
            await consumer.getmany(timeout_ms=1000)

    async def produce(seconds: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            for _ in range(50):
                await producer.send(TOPIC, b"x" * 600)
            await asyncio.sleep(0.1)

    reading = asyncio.create_task(read())
    try:
        await produce(3)  # (the consumer has joined and reads)
        before = cpu_seconds(pid)
        await produce(SECONDS)
        return 100 * (cpu_seconds(pid) - before) / SECONDS
    finally:
        reading.cancel()
        await consumer.stop()
        await producer.stop()


async def case(label: str, batches: int = 0, mb: int = 0) -> None:
    tansu = start_tansu(Path(tempfile.mkdtemp(prefix="tansu-batches-")) / "tansu")
    try:
        await fill(tansu.address, batches, mb)
        print(f"{label:<45} Tansu {await steady(tansu.address, tansu.proc.pid):3.0f} % of a core", flush=True)
    finally:
        tansu.stop()


async def main(batches: int, mb: int) -> None:
    print(f"500 records/s produced to a topic and read at its end, over {SECONDS} s:")
    await case("the topic empty")
    await case(f"the topic holding {mb} MB in 512-KB batches", mb=mb)
    await case(f"the topic holding {batches:,} one-record batches", batches=batches)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=40_000)
    parser.add_argument("--mb", type=int, default=150)
    args = parser.parse_args()
    asyncio.run(main(args.batches, args.mb))
