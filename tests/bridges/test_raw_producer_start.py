"""`RawProducer.start` against a Kafka that takes connections and never answers (a host behind a firewall
that drops, a broker hung): a stop ends the try at once, not after the client's timeout (40 s), so
`docker stop` and systemd get a clean exit. The Kafka here is a local TCP server that stays silent."""

from __future__ import annotations

import asyncio

from bridges.kafka import RawProducer
from pipeline.brokers import KafkaSettings


def test_a_stop_ends_a_try_that_kafka_does_not_answer() -> None:
    async def scenario() -> bool:
        accepted = asyncio.Event()
        held: list[asyncio.StreamWriter] = []

        async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)
            accepted.set()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        producer, stop = RawProducer(KafkaSettings(bootstrap=f"127.0.0.1:{port}").connection(), 1), asyncio.Event()
        try:
            starting = asyncio.create_task(producer.start(["iammeter"], stop=stop))
            await asyncio.wait_for(accepted.wait(), 10)  # the client is connected and waits for an answer
            stop.set()
            return await asyncio.wait_for(starting, 30)  # (the try alone would take the client's 40 s)
        finally:
            for writer in held:
                writer.close()
            server.close()

    assert asyncio.run(scenario()) is False
