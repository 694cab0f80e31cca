"""`create_app(settings)`: the Faust app with its topics and agents wired (docs/architecture.md). Nothing here runs
at import time; `wattstream worker` builds the settings and the app, tests build their own."""

from __future__ import annotations

import logging
import socket
import time

import faust
import mode
from faust.types.auth import CredentialsT

from pipeline import health, topics
from pipeline.agents.decode import register_decode
from pipeline.agents.faust_internals import fetch_promptly, restore_tables_to_the_real_end
from pipeline.agents.outbox import Outlet
from pipeline.agents.surplus import register_surplus
from pipeline.brokers import KafkaSettings
from pipeline.drivers import DRIVERS
from pipeline.errors import SinkRejected, SinkUnavailable
from pipeline.meters_file import MetersFile
from pipeline.settings import Settings
from pipeline.sinks import Sink
from pipeline.sinks.files import FileSink
from pipeline.sinks.influx import InfluxSink

log = logging.getLogger(__name__)


def build_sink(settings: Settings) -> Sink:
    """InfluxDB when `WATTSTREAM_INFLUX_URL` is set, else the daily files."""
    return InfluxSink(settings.influx) if settings.influx.url else FileSink(settings.files)


def broker_credentials(kafka: KafkaSettings) -> CredentialsT | None:
    """`KafkaSettings.connection()` in Faust's terms."""
    if kafka.sasl:
        assert kafka.password is not None
        return faust.SASLCredentials(username=kafka.username, password=kafka.password.get_secret_value(),
                                     ssl_context=kafka.ssl_context() if kafka.tls else None,
                                     mechanism=kafka.sasl_mechanism)
    return faust.SSLCredentials(kafka.ssl_context()) if kafka.tls else None


def create_app(settings: Settings, *, meters_file: MetersFile | None = None, sink: Sink | None = None) -> faust.App:
    """`meters_file`: the one read already (else it is read here)."""
    restore_tables_to_the_real_end()
    fetch_promptly(settings.worker.fetch_wait_ms)
    app = faust.App(
        settings.worker.app_id,
        broker=f"kafka://{settings.kafka.bootstrap}",
        broker_credentials=broker_credentials(settings.kafka),
        store="memory://",  # the tables live in memory, restored from their changelogs (`agents.changelog`)
        datadir=str(settings.worker_datadir),
        topic_partitions=settings.kafka.partitions,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.worker.session_timeout,
        broker_rebalance_timeout=settings.worker.rebalance_timeout,
        broker_heartbeat_interval=min(3.0, settings.worker.session_timeout / 3),
        web_enabled=False,
        autodiscover=False,
    )

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, partitions=settings.kafka.partitions)

    meters_file = meters_file or settings.read_meters_file()
    deadletter = topic(topics.DEADLETTER)
    config = meters_file.driver_config()
    chosen = sink or build_sink(settings)
    health.SINK_FAILURES.labels(chosen.name)  # reported (as 0) from the start, not from the first failure
    limits = {meter.meter_id: meter.limits() for meter in meters_file.meter}
    outlet = Outlet(settings.kafka.connection())  # the agents' outputs (`agents.outbox`)
    feeds = meters_file.feeds()
    for name, driver in DRIVERS.items():
        register_decode(app, outlet, topic(topics.raw_topic(name)), deadletter, chosen, settings, name, driver,
                        config, limits, feeds)
    site_readings = topic(topics.SITE_READINGS)
    register_surplus(app, outlet, site_readings, deadletter, chosen, settings, meters_file.sites(), feeds)
    produced = [topic(name) for name in (topics.READINGS, topics.READINGS_5M, topics.AVERAGES_10M, topics.SURPLUS)]

    class Outlets(mode.Service):
        """Creates the topics the agents only produce to before the first record goes out (a first
        produce to a missing topic can be retried after later records and arrive out of order), and
        stops the agents' producer and closes the sink at the end."""

        async def on_start(self) -> None:
            for out in (*produced, deadletter, site_readings):
                await out.maybe_declare()

        async def on_stop(self) -> None:
            await outlet.stop()
            await chosen.close()

    app.service(Outlets)
    if isinstance(chosen, InfluxSink):
        worker = f"{settings.worker.app_id}@{socket.gethostname()}"

        async def write_health() -> None:
            try:
                await chosen.write_lines(health.lines(worker, time.time_ns() // 1000))
            except (SinkUnavailable, SinkRejected) as exc:  # the next snapshot has the same counters
                log.info("pipeline health not written: %s", exc)

        app.timer(settings.worker.health_seconds, name="pipeline-health")(write_health)
    return app
