"""One error root for everything that can go wrong with input (STYLE 8).

Decoders raise only these; agents catch `IngestError` at the edge and send the input to the
dead-letter topic with `stage` and the message, and count it by `stage` and `reason` (a short name
for the kind of failure, for the pipeline dashboard). Messages carry the offending value, never a key.
"""


class IngestError(Exception):
    """Input that cannot become a `Reading`. `stage` names where it failed."""

    stage = "decode"
    reason = "invalid"


class FrameError(IngestError):
    """The bytes are not a well-formed frame/payload of the driver's format."""

    stage = "frame"
    reason = "malformed"


class ChecksumError(FrameError):
    """A frame whose checksum does not match."""

    reason = "checksum"


class DecryptError(IngestError):
    """Encrypted content that cannot be decrypted (wrong key, corrupted bytes)."""

    stage = "decrypt"
    reason = "undecryptable"


class UnknownField(IngestError):
    """A well-formed payload carrying a value the driver does not know how to map."""

    stage = "decode"
    reason = "unknown_field"


class MissingField(IngestError):
    """A payload without a value its mapping requires (`mqtt_json`): the message names the path."""

    stage = "decode"
    reason = "missing_field"


class NotAReading(IngestError):
    """A record that should be a `Reading` JSON and is not."""

    stage = "decode"
    reason = "not_a_reading"


class Implausible(IngestError):
    """A well-formed reading whose values cannot be physically true: out of range, a register going
    backwards or rising faster than the meter could count (`pipeline.logic.plausible`)."""

    stage = "check"
    reason = "implausible"


def shorten(value: object, limit: int = 80) -> str:
    """The offending value for an error message, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
