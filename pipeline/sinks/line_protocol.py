"""InfluxDB line protocol, written directly: `measurement,tag=v,... field=v,... timestamp`.

The same text `influxdb_client.Point.to_line_protocol()` gives (tags and fields sorted by key, a float's
trailing `.0` dropped, non-finite floats left out, integers with `i`, strings quoted; pinned by
tests/sinks/test_line_protocol.py against the client), at a fraction of the cost: a `Point` per scope
costs about 16 µs, three times what the rest of a reading's sink mapping does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

Field = float | int | str | bool

_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\r": r"\r", "\t": r"\t"})
_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\r": r"\r", "\t": r"\t"})
_STRING = str.maketrans({"\\": "\\\\", '"': r"\""})


_escaped: dict[str, str] = {}  # field names are few: escaped once each (a third of a line's cost otherwise)


def key(text: str) -> str:
    """A tag key or field key, escaped."""
    escaped = _escaped.get(text)
    if escaped is None:
        escaped = text.translate(_KEY)
        if len(_escaped) < 10_000:
            _escaped[text] = escaped
    return escaped


def tag_value(text: str) -> str:
    escaped = text.translate(_KEY)
    return escaped + " " if escaped.endswith("\\") else escaped  # a last `\` would escape what follows


def series(measurement: str, tags: Mapping[str, str]) -> str:
    """`measurement,tag=value,...` (tags sorted by key, empty ones left out): the part of a line that is the
    same for every point of one series, to be built once per meter and scope."""
    parts = [measurement.translate(_MEASUREMENT)]
    parts += [f"{key(name)}={tag_value(value)}" for name, value in sorted(tags.items()) if name and value]
    return ",".join(parts)


def line(prefix: str, fields: Mapping[str, Field], ts: int) -> str | None:
    """One point: `prefix` from `series`, the fields sorted by key, the timestamp as it is. None when no
    field has a value that can be written."""
    out = []
    for name, value in sorted(fields.items()):
        if isinstance(value, float):
            if not math.isfinite(value):
                continue
            text = repr(value)
            out.append(f"{key(name)}={text[:-2] if text.endswith('.0') else text}")
        elif isinstance(value, bool):
            out.append(f"{key(name)}={'true' if value else 'false'}")
        elif isinstance(value, int):
            out.append(f"{key(name)}={value}i")
        else:
            out.append(f'{key(name)}="{value.translate(_STRING)}"')
    return f"{prefix} {','.join(out)} {ts}" if out else None
