"""Every error wattstream raises itself, under one root (`WattstreamError`), and the fixed names a dead
letter carries: where it failed (`Stage`) and what kind of failure it was (`Reason`).

Decoders raise only `IngestError`s; agents catch them at the edge and send the input to the
dead-letter topic with its stage, reason and message, and count it by stage and reason (the pipeline
dashboard). Messages carry the offending value, never a key. docs/architecture.md says what happens to
each kind of error.
"""

from collections.abc import Callable
from enum import StrEnum

from pydantic import ValidationError


class Stage(StrEnum):
    """Where a record failed: the `stage` header of a dead letter."""

    FRAME = "frame"  # the bytes are not a frame of the driver's format
    DECRYPT = "decrypt"
    DECODE = "decode"  # a frame whose content cannot become a Reading
    CHECK = "check"  # a Reading that cannot be physically true
    SINK = "sink"  # a record the sink refused for good
    SURPLUS = "surplus"  # a site reading or charge-mode set the surplus agent cannot use


class Reason(StrEnum):
    """The kind of failure: the `reason` header of a dead letter, short and fixed (a metric label)."""

    INVALID = "invalid"
    MALFORMED = "malformed"
    CHECKSUM = "checksum"
    ENVELOPE = "envelope"
    UNDECRYPTABLE = "undecryptable"
    UNKNOWN_FIELD = "unknown_field"
    MISSING_FIELD = "missing_field"
    NOT_A_READING = "not_a_reading"
    IMPLAUSIBLE = "implausible"
    REJECTED = "rejected"  # by the sink
    BAD_COMMAND = "bad_command"  # a charge-mode set that is not one
    NO_SITE = "no_site"  # for a site the meters file does not have
    NO_CHARGER = "no_charger"  # for a charger the site does not have


class WattstreamError(Exception):
    """The root of every error wattstream raises."""


class IngestError(WattstreamError):
    """Input that cannot become a `Reading`. `stage` names where it failed."""

    stage = Stage.DECODE
    reason = Reason.INVALID


class FrameError(IngestError):
    """The bytes are not a well-formed frame/payload of the driver's format."""

    stage = Stage.FRAME
    reason = Reason.MALFORMED


class ChecksumError(FrameError):
    """A frame whose checksum does not match."""

    reason = Reason.CHECKSUM


class DecryptError(IngestError):
    """Encrypted content that cannot be decrypted (wrong key, corrupted bytes)."""

    stage = Stage.DECRYPT
    reason = Reason.UNDECRYPTABLE


class UnknownField(IngestError):
    """A well-formed payload carrying a value the driver does not know how to map."""

    stage = Stage.DECODE
    reason = Reason.UNKNOWN_FIELD


class MissingField(IngestError):
    """A payload without a value its mapping requires (`mqtt_json`): the message names the path."""

    stage = Stage.DECODE
    reason = Reason.MISSING_FIELD


class NotAReading(IngestError):
    """A record that should be a `Reading` JSON and is not."""

    stage = Stage.DECODE
    reason = Reason.NOT_A_READING


class Implausible(IngestError):
    """A well-formed reading whose values cannot be physically true: out of range, a register going
    backwards or rising faster than the meter could count (`pipeline.logic.plausible`)."""

    stage = Stage.CHECK
    reason = Reason.IMPLAUSIBLE


class SinkUnavailable(WattstreamError):
    """Transient: the target is down, slow or overloaded. Retry later."""


class SinkRejected(WattstreamError):
    """Permanent: the target refuses this data (e.g. a field type conflict)."""


class ConfigError(WattstreamError, ValueError):
    """A setting or the meters file is wrong; the message is one line naming where (never a value given:
    it may be a secret)."""


def problems(exc: ValidationError, where: Callable[[tuple[int | str, ...]], str]) -> str:
    """Each error of a settings or meters-file validation, `<where>: <message>`, in one line and without
    the values given (they may hold a secret)."""
    return "; ".join(f"{where(e['loc']) if e['loc'] else 'file'}: {e['msg'].removeprefix('Value error, ')}"
                     for e in exc.errors(include_input=False, include_url=False)).replace("\n", " ")


def shorten(value: object, limit: int = 80) -> str:
    """The offending value for an error message, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
