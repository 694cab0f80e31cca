"""Loading the captured frames under tests/frames/."""

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline import topics

FRAMES = Path(__file__).parent / "frames"


def vectors(driver: str) -> dict[str, dict[str, Any]]:
    """The entries of tests/frames/<driver>/vectors.json by id."""
    entries = json.loads((FRAMES / driver / "vectors.json").read_text())
    return {entry["id"]: entry for entry in entries}


def iammeter_stream(meters: int, seconds: int, start: datetime) -> tuple[list[tuple[bytes, bytes]],
                                                                         list[list[tuple[str, bytes]]]]:
    """Raw records for `meter.raw.iammeter` as the bridge would produce them: the captured three-phase
    payload (no SN inside: the meter id comes from the key) from meters `M000`.., one per meter and
    second from `start` (the `received_at` header, which becomes the reading's time)."""
    payload = str(vectors("iammeter")["iammeter-doc-three-phase-nem"]["input"]).encode()
    records, headers = [], []
    for second in range(seconds):
        for meter in range(meters):
            records.append((f"M{meter:03d}".encode(), payload))
            headers.append([(topics.H_RECEIVED_AT, (start + timedelta(seconds=second)).isoformat().encode())])
    return records, headers
