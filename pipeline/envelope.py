"""Raw records that carry several payloads: the envelope a bridge sends when payloads queue up.

A busy bridge (an MQTT bridge with hundreds of meters) would produce one Kafka record per payload, and
the worker pays Faust's cost per record (handing it from the consumer thread to the agent) on each:
more than decoding it. So while the bridge's last round of sends is in flight, it collects what arrives
and then sends it per raw partition as one record (`bridges.kafka.RawProducer`); at low rates every
payload goes alone, at once, as a plain record, as before. A worker older than the envelopes
dead-letters them (stage `frame`): upgrade the workers before the bridges.

An envelope is a record on the same raw topic with the header `envelope` = `1` (the format's version),
no key, and as value each payload's own key, headers and exact bytes, in the order received:

    count (u32), then per payload:
      key length (u32), key, header count (u16),
      per header: name length (u16), name (UTF-8), value length (u32), value,
      payload length (u32), payload

(big-endian). The worker takes each payload as if it were a record of its own (its key, its headers),
so decoding, dead letters and the state per device are the same either way; consumers of the raw
topics other than the worker see the header and unpack with `items`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from pipeline import topics
from pipeline.errors import FrameError, Reason

VERSION = b"1"
U16, U32 = struct.Struct(">H"), struct.Struct(">I")
HEAD = U32.size  # the payload count in front of an envelope's payloads


class Item(NamedTuple):
    """One payload as the bridge received it: what a plain raw record has."""

    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


class EnvelopeError(FrameError):
    reason = Reason.ENVELOPE


def pack(items: Sequence[Item]) -> bytes:
    parts = [U32.pack(len(items))]
    for key, value, headers in items:
        parts += [U32.pack(len(key)), key, U16.pack(len(headers))]
        for name, header in headers:
            encoded = name.encode()
            parts += [U16.pack(len(encoded)), encoded, U32.pack(len(header)), header]
        parts += [U32.pack(len(value)), value]
    return b"".join(parts)


def record(items: Sequence[Item]) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of the raw record that carries `items`: a lone payload as the plain record it
    was, several as their envelope (no key)."""
    if len(items) == 1:
        key, value, headers = items[0]
        return key, value, list(headers)
    return None, pack(items), [(topics.H_ENVELOPE, VERSION)]


def size(item: Item) -> int:
    """The bytes `item` takes in an envelope."""
    headers = sum(6 + len(name.encode()) + len(value) for name, value in item.headers)
    return 10 + len(item.key) + len(item.value) + headers


def unpack(data: bytes) -> list[Item]:
    """The payloads of an envelope; `EnvelopeError` when the bytes are not one (cut, or extra bytes)."""
    try:
        (count,), at = U32.unpack_from(data, 0), 4
        items = []
        for _ in range(count):
            key, at = _chunk(data, at)
            (n_headers,), at = U16.unpack_from(data, at), at + 2
            headers = []
            for _ in range(n_headers):
                (size,), at = U16.unpack_from(data, at), at + 2
                name, at = data[at:at + size].decode(), at + size
                header, at = _chunk(data, at)
                headers.append((name, header))
            value, at = _chunk(data, at)
            items.append(Item(key, value, tuple(headers)))
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise EnvelopeError(f"not an envelope of version {VERSION.decode()}: {exc}") from exc
    if at != len(data):
        raise EnvelopeError(f"envelope of {count} payloads has {len(data) - at} bytes too many")
    return items


def _chunk(data: bytes, at: int) -> tuple[bytes, int]:
    (size,), at = U32.unpack_from(data, at), at + 4
    if at + size > len(data):
        raise ValueError(f"a field of {size} bytes at {at} runs past the end ({len(data)} bytes)")
    return data[at:at + size], at + size


def items(key: bytes | None, value: bytes | None, headers: Mapping[str, bytes]) -> list[Item]:
    """The payloads of a raw record: those of an envelope, or the record itself. An envelope of another
    version raises `EnvelopeError`."""
    version = headers.get(topics.H_ENVELOPE)
    if version is None:
        return [Item(key or b"", value or b"", tuple(headers.items()))]
    if version != VERSION:
        raise EnvelopeError(f"envelope version {version!r} is not understood (this worker reads {VERSION!r})")
    return unpack(value or b"")
