"""Ids for Home Assistant's MQTT discovery. The node and object ids of a discovery topic
(`<prefix>/<component>/<node id>/<object id>/config`) take only ASCII letters, digits, `_` and `-`: Home
Assistant ignores a config whose topic has any other character, so the same ids go into `unique_id` and
`default_entity_id` too."""

from __future__ import annotations

import re

_OTHER = re.compile(r"[^A-Za-z0-9_-]")


def ha_id(text: str) -> str:
    """`text` with every character Home Assistant does not take in an id as `_`."""
    return _OTHER.sub("_", text)
