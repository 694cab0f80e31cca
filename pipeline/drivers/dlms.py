"""DLMS/COSEM as pushed on the Austrian P1 interface: general-glo-ciphering (AES-128-GCM), the
data-notification APDU, A-XDR data and COSEM date-time (DLMS UA Green/Blue Book; Netz NÖ brochure pp. 6-9).

Hand-parsed on purpose: the P1 push uses a dozen A-XDR types, and `dlms-cosem` (the library the issue
suggests) brings a full client stack (HDLC, association, attrs) for what is ~100 lines here; its parser
would still need the EVN specifics (no tag, flat or nested layouts). Revisit if other meters need more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final

from Crypto.Cipher import AES

from pipeline.errors import DecryptError, FrameError

GLO_CIPHERING: Final = 0xDB
DATA_NOTIFICATION: Final = 0x0F
TAG_LEN: Final = 12  # DLMS transmits the first 12 bytes of the GCM tag
AUTHENTICATED: Final = 0x10
ENCRYPTED: Final = 0x20


@dataclass(frozen=True)
class Ciphered:
    system_title: bytes
    security_control: int
    frame_counter: bytes
    ciphertext: bytes
    tag: bytes | None


def _ber_length(buf: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(buf):
        raise IndexError(pos)
    first = buf[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    if not 1 <= count <= 2 or pos + 1 + count > len(buf):
        raise IndexError(pos)
    return int.from_bytes(buf[pos + 1: pos + 1 + count], "big"), pos + 1 + count


def parse_glo(apdu: bytes) -> Ciphered:
    """`DB 08 <system title> <length> <SC> <FC> <ciphertext> [<tag>]`."""
    try:
        if apdu[0] != GLO_CIPHERING or apdu[1] != 8:
            raise FrameError(f"not a general-glo-ciphering APDU: starts {apdu[:2].hex()}")
        title = apdu[2:10]
        length, pos = _ber_length(apdu, 10)
    except IndexError as exc:
        raise FrameError(f"general-glo-ciphering APDU truncated ({len(apdu)} bytes)") from exc
    body = apdu[pos:]
    if len(body) != length or length < 5:
        raise FrameError(f"general-glo-ciphering length {length} but {len(body)} bytes follow")
    sc, counter, rest = body[0], body[1:5], body[5:]
    if not sc & ENCRYPTED:
        raise FrameError(f"security control {sc:#04x} without encryption is not supported")
    tag = None
    if sc & AUTHENTICATED:
        if len(rest) <= TAG_LEN:
            raise FrameError("authenticated APDU shorter than its tag")
        rest, tag = rest[:-TAG_LEN], rest[-TAG_LEN:]
    return Ciphered(title, sc, counter, rest, tag)


def decrypt(ciphered: Ciphered, key: bytes) -> bytes:
    """AES-128-GCM, IV = system title ‖ frame counter. EVN sends no tag (SC 0x20): the plaintext is
    then checked by its structure only (see `parse_notification`). An authenticated APDU's tag is
    stripped but not verified: no authentication key is configurable (no Austrian grid uses one; an
    encrypted DSMR telegram is checked by its own CRC16, `dsmr`)."""
    if len(key) != 16:
        raise DecryptError(f"the key must be 16 bytes, got {len(key)}")
    cipher = AES.new(key, AES.MODE_GCM, nonce=ciphered.system_title + ciphered.frame_counter, mac_len=TAG_LEN)
    return cipher.decrypt(ciphered.ciphertext)


# A-XDR ----------------------------------------------------------------------------------------------

FIXED: Final = {  # tag → (size, signed)
    0x03: (1, False), 0x05: (4, True), 0x06: (4, False), 0x0F: (1, True), 0x10: (2, True), 0x11: (1, False),
    0x12: (2, False), 0x14: (8, True), 0x15: (8, False), 0x16: (1, False),
}
Data = None | int | bytes | list["Data"]


def parse_data(buf: bytes, pos: int, depth: int = 0) -> tuple[Data, int]:
    """One A-XDR `Data` at `pos` → (value, next position). Octet/visible strings become bytes,
    structures and arrays lists. IndexError/ValueError on malformed input (callers translate)."""
    if depth > 8:
        raise ValueError("A-XDR nesting too deep")
    tag = buf[pos]
    pos += 1
    if tag == 0x00:
        return None, pos
    if tag in (0x01, 0x02):
        count, pos = _ber_length(buf, pos)
        items: list[Data] = []
        for _ in range(count):
            item, pos = parse_data(buf, pos, depth + 1)
            items.append(item)
        return items, pos
    if tag in (0x09, 0x0A):
        size, pos = _ber_length(buf, pos)
        if pos + size > len(buf):
            raise IndexError(pos)
        return buf[pos: pos + size], pos + size
    if tag in FIXED:
        size, signed = FIXED[tag]
        if pos + size > len(buf):
            raise IndexError(pos)
        return int.from_bytes(buf[pos: pos + size], "big", signed=signed), pos + size
    raise ValueError(f"A-XDR type {tag:#04x} not supported")


@dataclass(frozen=True)
class Notification:
    invoke_id: bytes
    clock: bytes | None  # 12-byte COSEM date-time of the notification, if sent
    body: Data


def parse_notification(plain: bytes) -> Notification:
    """The data-notification; any deviation from its structure means the key was wrong or the
    ciphertext corrupted (GCM without a tag cannot tell otherwise)."""
    try:
        if plain[0] != DATA_NOTIFICATION:
            raise DecryptError(f"decrypted APDU is not a data-notification (starts {plain[:4].hex()}): "
                               "wrong key or corrupted frame")
        invoke_id = plain[1:5]
        clock_len = plain[5]
        if clock_len not in (0, 12):
            raise DecryptError(f"data-notification date-time length {clock_len}: wrong key or corrupted frame")
        clock = plain[6:18] if clock_len else None
        body, end = parse_data(plain, 6 + clock_len)
    except (IndexError, ValueError) as exc:
        raise DecryptError(f"decrypted APDU does not parse ({exc or 'truncated'}): wrong key or corrupted frame") \
            from exc
    if end != len(plain):
        raise DecryptError(f"{len(plain) - end} bytes after the data-notification: wrong key or corrupted frame")
    return Notification(invoke_id, clock, body)


def cosem_datetime(raw: bytes, zone: tzinfo) -> datetime | None:
    """COSEM date-time (12 bytes) → aware UTC datetime. The deviation (minutes, local = UTC - deviation)
    wins; where it is unspecified (0x8000) the meter's zone decides. None when the date is unspecified."""
    if len(raw) != 12:
        return None
    year = int.from_bytes(raw[0:2], "big")
    month, day, _dow, hour, minute, second, hundredths = raw[2:9]
    deviation = int.from_bytes(raw[9:11], "big", signed=True)
    if year == 0xFFFF or month > 12 or day > 31 or hour > 23 or minute > 59 or second > 59:
        return None
    micro = hundredths * 10_000 if hundredths <= 99 else 0
    try:
        local = datetime(year, month, day, hour, minute, second, micro)
    except ValueError:
        return None
    if deviation != -0x8000:
        return (local + timedelta(minutes=deviation)).replace(tzinfo=UTC)
    return local.replace(tzinfo=zone).astimezone(UTC)
