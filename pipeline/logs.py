"""Logging that every process shares, without Faust: USR1 flips between debug and the usual level."""

from __future__ import annotations

import logging


def toggle_debug() -> None:
    """USR1: flip the root logger between DEBUG and INFO (keilog's convention)."""
    root = logging.getLogger()
    root.setLevel(logging.INFO if root.level == logging.DEBUG else logging.DEBUG)
    root.warning("log level now %s", logging.getLevelName(root.level))
