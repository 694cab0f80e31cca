"""MQTT → Kafka bridge (paho-mqtt): subscribes the meters' topics with QoS 1 on a persistent session
and produces every payload unchanged to `meter.raw.<driver>`.

A message is acknowledged to the broker only after Kafka has confirmed the record, so nothing is lost
between the two: while Kafka is unreachable the bridge drops its MQTT connection and the broker keeps
the unacknowledged and newer messages for our session (clean_session=False, fixed client id) until we
are back. paho reconnects to MQTT by itself with back-off (1 s … 60 s).

A meter's QoS 0 message comes at QoS 0 unless the broker upgrades it to our subscription's QoS 1
(mosquitto: `upgrade_outgoing_qos true`, as our mosquitto.conf has it); at QoS 0 there is nothing to
acknowledge, and what the bridge holds when it is killed is lost. The bridge says so once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from bridges.kafka import RawProducer
from pipeline.brokers import MqttSettings
from pipeline.drivers import Config, Router

log = logging.getLogger(__name__)
REPORT_SECONDS = 60.0  # how often the bridge logs how many payloads it forwarded in how many records


def new_client(settings: MqttSettings, client_id: str, *, clean_session: bool | None = None,
               manual_ack: bool = False) -> mqtt.Client:
    """A paho client that logs in with the account and uses TLS as `settings` say (not connected yet)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session,
                         manual_ack=manual_ack)
    if settings.username:
        client.username_pw_set(settings.username,
                               settings.password.get_secret_value() if settings.password else None)
    if settings.tls:
        client.tls_set_context(settings.ssl_context())
    return client


def publishing_client(settings: MqttSettings, role: str,
                      on_connect: Callable[[mqtt.Client], None] | None = None,
                      on_message: Callable[[mqtt.MQTTMessage], object] | None = None) -> mqtt.Client:
    """A connected (in the background, reconnecting) MQTT client for publishing, client id
    `<client_id>-<role>`; `on_connect` runs at every (re)connect (to subscribe), `on_message` for each
    message of those subscriptions (in paho's thread)."""
    client = new_client(settings, f"{settings.client_id}-{role}")
    if on_connect is not None:
        def connected(c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
            if reason.is_failure:
                log.warning("MQTT connect refused: %s", reason)
            else:
                on_connect(c)
        client.on_connect = connected
    if on_message is not None:
        def received(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
            on_message(message)
        client.on_message = received
    client.reconnect_delay_set(1, 30)
    client.connect_async(settings.host, settings.port, settings.keepalive)
    client.loop_start()
    return client


class MqttBridge:
    def __init__(self, settings: MqttSettings, producer: RawProducer, config: Config) -> None:
        self._settings = settings
        self._producer = producer
        self._router = Router(config)
        # messages from paho's thread, handed to the loop a batch at a time: one wake-up of the loop for
        # what arrived meanwhile, not one per message (`_on_message`)
        self._queue: asyncio.Queue[list[mqtt.MQTTMessage]] = asyncio.Queue()
        self._arrived: list[mqtt.MQTTMessage] = []
        self._arrived_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kafka_failed = asyncio.Event()
        self._qos0_seen = False
        self.client = new_client(settings, settings.client_id, clean_session=False, manual_ack=True)
        self.client.reconnect_delay_set(1, 60)
        self.client.enable_logger(logging.getLogger("paho"))  # paho's own errors through our logs
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    # paho's network thread -----------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: ReasonCode,
                    _p: object) -> None:
        if reason.is_failure:
            log.warning("MQTT connect to %s:%s refused: %s", self._settings.host, self._settings.port, reason)
            return
        log.info("MQTT connected to %s:%s", self._settings.host, self._settings.port)
        client.subscribe([(pattern, 1) for pattern in self._router.table])

    def _on_subscribe(self, _c: mqtt.Client, _u: object, _mid: int, reasons: list[ReasonCode],
                      _p: object) -> None:
        log.info("MQTT subscribed to %s (%s)", ", ".join(self._router.table), ", ".join(map(str, reasons)))

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: ReasonCode,
                       _p: object) -> None:
        log.warning("MQTT disconnected (%s); paho reconnects with back-off", reason)

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        assert self._loop is not None
        message.timestamp = datetime.now(UTC).timestamp()  # receive time, wall clock
        if message.qos == 0 and not self._qos0_seen:
            self._qos0_seen = True
            log.warning("MQTT message on %s came with QoS 0: the broker does not upgrade it to this bridge's "
                        "QoS 1, so what the bridge holds when it is killed is lost (mosquitto: set "
                        "upgrade_outgoing_qos true)", message.topic)
        with self._arrived_lock:
            self._arrived.append(message)
            first = len(self._arrived) == 1
        if first:  # the loop has taken what came before: wake it up for this one and what follows
            self._loop.call_soon_threadsafe(self._hand_over)

    # asyncio side --------------------------------------------------------------------------------
    def _hand_over(self) -> None:
        with self._arrived_lock:
            arrived, self._arrived = self._arrived, []
        self._queue.put_nowait(arrived)

    def _delivered(self, message: mqtt.MQTTMessage, future: asyncio.Future[None]) -> None:
        if future.cancelled() or future.exception() is not None:
            log.error("Kafka did not take %s: %r", message.topic, None if future.cancelled()
                      else future.exception())
            self._kafka_failed.set()
            return
        self.client.ack(message.mid, message.qos)

    async def _forward(self, message: mqtt.MQTTMessage) -> None:
        found = self._router.route(message.topic)
        if found is None:  # cannot happen with our subscriptions; never drop silently
            log.error("no route for MQTT topic %s, message not acknowledged", message.topic)
            return
        driver, key = found
        received_at = datetime.fromtimestamp(message.timestamp, UTC)
        # paho declares the payload `bytes | bytearray`; a received one is bytes, which bytes() returns as is
        future = await self._producer.send(driver, key, bytes(message.payload), message.topic, received_at)
        future.add_done_callback(lambda f: self._delivered(message, f))

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        if not await self._producer.start(self._router.drivers, stop=stop):
            return
        self._connect()
        reported = asyncio.get_running_loop().time()
        try:
            while not stop.is_set():
                if asyncio.get_running_loop().time() - reported >= REPORT_SECONDS:
                    reported = asyncio.get_running_loop().time()
                    sizes = self._producer.sizes
                    log.info("forwarded %d payloads in %d Kafka records so far (at most %d in one)",
                             sum(size * count for size, count in sizes.items()), sum(sizes.values()),
                             max(sizes, default=0))
                if self._kafka_failed.is_set():
                    await self._recover_kafka(stop)
                    continue
                try:
                    arrived = await asyncio.wait_for(self._queue.get(), timeout=0.5)
                except TimeoutError:
                    continue
                for message in arrived:
                    if self._kafka_failed.is_set():  # the rest unacknowledged: the broker sends it again, in order
                        break
                    await self._forward(message)
            await self._producer.flush()
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            await self._producer.stop()

    async def _recover_kafka(self, stop: asyncio.Event) -> None:
        """Kafka refused a record: leave MQTT (the broker keeps our messages), wait for Kafka (or a stop),
        rejoin."""
        log.warning("leaving MQTT until Kafka is back; the broker holds the messages")
        self.client.disconnect()
        self.client.loop_stop()
        with self._arrived_lock:  # unacknowledged: the broker sends them again
            self._arrived.clear()
        while not self._queue.empty():
            self._queue.get_nowait()
        await self._producer.stop()
        if not await self._producer.start(self._router.drivers, stop=stop):
            return
        self._kafka_failed.clear()
        self._connect()

    def _connect(self) -> None:
        """Connect in paho's network thread, which retries with back-off until the broker answers."""
        self.client.connect_async(self._settings.host, self._settings.port, self._settings.keepalive)
        self.client.loop_start()
