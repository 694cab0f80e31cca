"""Publishing to the test broker as a meter would."""

import paho.mqtt.publish as publish


def publish_all(port: int, messages: list[tuple[str, bytes | str]]) -> None:
    publish.multiple([{"topic": topic, "payload": payload, "qos": 1} for topic, payload in messages],
                     hostname="127.0.0.1", port=port)
