"""M-Bus long frames (EN 13757-2) as the Austrian P1 customer interface sends them, and their
reassembly into one DLMS APDU (Netz NÖ brochure "Smart Meter Kundenschnittstelle P1", 3rd ed. 2022).

`68 L L 68 | C A CI STSAP DTSAP | data | CS 16`: CS = sum mod 256 of C..data; CI bit 4 = last segment,
bits 0-3 = segment number. Sagemcom T210-D quirk: a first frame `68 01 01 68` that carries 0x101 bytes
(the L byte holds the low byte only) — accepted when the checksum and stop byte prove it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pipeline.errors import ChecksumError, FrameError

START: Final = 0x68
STOP: Final = 0x16
HEADER: Final = 4  # 68 L L 68
LINK: Final = 5  # C A CI STSAP DTSAP
FIN: Final = 0x10


@dataclass(frozen=True)
class Frame:
    control: int
    address: int
    ci: int
    data: bytes  # the user data after C A CI STSAP DTSAP

    @property
    def last(self) -> bool:
        return bool(self.ci & FIN)

    @property
    def segment(self) -> int:
        return self.ci & 0x0F


def frame_at(buf: bytes | bytearray, pos: int) -> tuple[Frame, int] | None:
    """The frame starting at `pos`, and its end; None while incomplete. Raises on a bad frame."""
    if len(buf) - pos < HEADER:
        return None
    if buf[pos + 3] != START or buf[pos + 1] != buf[pos + 2]:
        raise FrameError(f"M-Bus long frame header broken at offset {pos}: {bytes(buf[pos:pos + 4]).hex()}")
    low = buf[pos + 1]
    # An L below the link header cannot be real: that is the Sagemcom 0x101 quirk.
    length = low if low >= LINK else low + 0x100
    end = pos + HEADER + length + 2
    if end > len(buf):
        return None
    body = buf[pos + HEADER: pos + HEADER + length]
    if buf[end - 1] != STOP or sum(body) & 0xFF != buf[end - 2]:
        raise ChecksumError(f"M-Bus frame at offset {pos} (L={low:#04x}): checksum or stop byte wrong")
    return Frame(body[0], body[1], body[2], bytes(body[LINK:])), end


def parse_frames(data: bytes) -> list[Frame]:
    """All frames of a complete message, strictly: no garbage, nothing left over."""
    frames, pos = [], 0
    while pos < len(data):
        if data[pos] != START:
            raise FrameError(f"no M-Bus start byte at offset {pos}: {data[pos:pos + 8].hex()}")
        found = frame_at(data, pos)
        if found is None:
            raise FrameError(f"M-Bus frame at offset {pos} truncated ({len(data) - pos} bytes left)")
        frame, pos = found
        frames.append(frame)
    if not frames:
        raise FrameError("no M-Bus frame in an empty message")
    return frames


def reassemble(frames: list[Frame]) -> bytes:
    """The APDU of one telegram: segments 0, 1, ... in order, the last one flagged FIN."""
    for expected, frame in enumerate(frames):
        if frame.segment != expected & 0x0F:
            raise FrameError(f"M-Bus segment {frame.segment} where {expected} was expected (reordered or lost)")
        if frame.last != (expected == len(frames) - 1):
            raise FrameError(f"M-Bus segment {frame.segment}: last-segment flag {'set' if frame.last else 'missing'}")
    return b"".join(frame.data for frame in frames)
