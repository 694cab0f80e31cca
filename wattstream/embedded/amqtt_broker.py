"""`python -m wattstream.embedded.amqtt_broker PORT`: a pure-Python MQTT broker on 127.0.0.1:PORT."""

import asyncio
import sys

from amqtt.broker import Broker


async def serve(port: int) -> None:
    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    })
    await broker.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
