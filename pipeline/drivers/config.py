"""What the drivers take from outside the payload: the meters file's keys and JSON mappings (`Config`),
and the MQTT subscriptions that lead to a driver (`Route`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pipeline.drivers.mqtt_json_mapping import Mappings

ANY_METER: Final = "*"  # a key for every meter (`wattstream decode --key`)


def aes_key(text: str, meter: str) -> bytes:
    """A 16-byte AES key from its 32 hex digits; the error names the meter, never the key."""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 16:
        raise ValueError(f"the key of {meter} must be 32 hex digits")
    return key


@dataclass(frozen=True)
class Route:
    """An MQTT subscription and which record key a message on it gets: the topic level `device_level`,
    else the fixed `device`, else the topic itself."""

    pattern: str
    device_level: int | None = None
    device: str | None = None

    def matches(self, topic: str) -> bool:
        """Whether a topic is one of this subscription's (`+` one level, a last `#` any number)."""
        want, have = self.pattern.split("/"), topic.split("/")
        if want[-1] == "#":
            want, have = want[:-1], have[:len(want) - 1]
        return len(want) == len(have) and all(w in ("+", h) for w, h in zip(want, have, strict=True))

    def key(self, topic: str) -> str:
        levels = topic.split("/")
        if self.device_level is not None and self.device_level < len(levels):
            return levels[self.device_level]
        return self.device or topic


@dataclass(frozen=True)
class Config:
    # device id or system title (upper case) → AES key; never in a repr, so never in a log line
    keys: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    mappings: Mappings | None = None  # the meters file's `[[mqtt_json]]` entries
