"""wattstream's Kafka clients reach a broker over TLS (`WATTSTREAM_KAFKA_SECURITY_PROTOCOL=SSL` and a CA
file): Tansu 0.6.0 cannot serve TLS itself (its `--cert` and `--key` options exclude each other), so a
TLS front in this test terminates it and Tansu advertises the front's port. A bridge's producer, a
follower (`publish`, `charger`) and the topic admin all go through it; a client that does not trust the
CA, or speaks plaintext, does not get in. SASL: see tests/test_settings.py."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from bridges.follow import follow
from bridges.kafka import RawProducer
from pipeline import topics
from pipeline.brokers import KafkaSettings
from tests.mqtt import certificates
from wattstream.embedded.servers import free_port, start_tansu


async def tls_front(port: int, behind: int, certs: Path) -> asyncio.Server:
    """Terminates TLS on `port` with the broker certificate from `scripts/mqtt-certs`, bytes on to `behind`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs / "server.crt", certs / "server.key")

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", behind)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True)

    return await asyncio.start_server(connection, "127.0.0.1", port, ssl=context)


def test_bridges_and_followers_reach_kafka_over_tls(tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    port = free_port()
    tansu = start_tansu(tmp_path / "tansu", advertised_port=port)
    kafka = KafkaSettings(bootstrap=f"127.0.0.1:{port}", partitions=1, security_protocol="SSL",
                          ca_file=certs / "ca.crt")
    raw = topics.raw_topic("iammeter")

    async def scenario() -> list[bytes]:
        front = await tls_front(port, tansu.port, certs)
        producer = RawProducer(kafka.connection(), kafka.partitions)
        await producer.start(["iammeter"])
        stop = asyncio.Event()
        try:
            assert await producer.deliver("iammeter", "M1", b"before", "test", stop)
            follower = await follow(kafka.connection(), raw, kafka.partitions, fetch_wait_ms=100)
            try:
                assert await producer.deliver("iammeter", "M1", b"after", "test", stop)
                got: list[bytes] = []
                for _ in range(100):
                    for records in (await follower.getmany(timeout_ms=100)).values():
                        got += [record.value for record in records]
                    if got:
                        return got
                return got
            finally:
                await follower.stop()
        finally:
            await producer.stop()
            front.close()

    try:
        assert asyncio.run(scenario()) == [b"after"]  # `follow` starts at the end: only what came after
    finally:
        tansu.stop()


@pytest.mark.parametrize(("client", "why"), [
    (KafkaSettings(security_protocol="SSL"), "CERTIFICATE_VERIFY_FAILED"),  # the system's CAs only
    (KafkaSettings(), "closed"),  # plaintext: the TLS side hangs up ("Connection at <front> closed")
], ids=["another-ca", "plaintext"])
def test_a_client_that_does_not_trust_the_ca_or_speaks_plaintext_stays_out(
        client: KafkaSettings, why: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    certs = certificates(tmp_path)
    port = free_port()
    tansu = start_tansu(tmp_path / "tansu", advertised_port=port)
    connection = {**client.connection(), "bootstrap_servers": f"127.0.0.1:{port}"}

    async def scenario() -> None:
        front = await tls_front(port, tansu.port, certs)
        producer = RawProducer(connection, 1, request_timeout_ms=3000)
        try:
            await asyncio.wait_for(producer.start(["iammeter"], retry_max=1), 3)
        finally:
            await producer.stop()
            front.close()

    try:
        with pytest.raises(TimeoutError):  # RawProducer retries until Kafka answers: it never does
            asyncio.run(scenario())
    finally:
        tansu.stop()
    assert any(f"127.0.0.1:{port}" in record.getMessage() and why in record.getMessage()
               for record in caplog.records if record.name == "aiokafka")
