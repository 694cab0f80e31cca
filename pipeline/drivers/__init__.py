"""Pure decoders, one module per meter family: bytes → list[Reading] (STYLE 1).

No I/O, asyncio, paho, serial or Kafka here. Dispatch goes through `DRIVERS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Protocol

from pipeline.drivers import adw300, evn, iammeter, lines, reading
from pipeline.models import Reading


class Decoder(Protocol):
    def __call__(
        self, payload: bytes, *, received_at: datetime, device_id: str | None = None
    ) -> list[Reading]: ...


DRIVERS: Mapping[str, Decoder] = MappingProxyType({
    iammeter.DRIVER: iammeter.decode,
    adw300.DRIVER: adw300.decode,
    evn.DRIVER: evn.decode,  # needs keys: `create_app` binds them from the meters file
    lines.DRIVER: lines.decode,
    reading.DRIVER: reading.decode,
})
