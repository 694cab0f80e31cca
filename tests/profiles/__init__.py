"""Recorded days of a grid and a PV meter (`generate.py`): `clear`, `clouds`, `loads`."""

import gzip
from pathlib import Path

from pipeline.models import Reading

PROFILES = Path(__file__).parent
# the meters file of the recorded site
METERS = """
[[meter]]
driver = "iammeter"
device = "GRID"
role = "grid"

[[meter]]
driver = "iammeter"
device = "PV"
role = "pv"

[[site]]
name = "home"
phases = "auto"
"""


def hour_of(day: str, hour: int) -> list[Reading]:
    """The readings of one UTC hour of a recorded day, in order."""
    with gzip.open(PROFILES / f"{day}.jsonl.gz") as source:
        return [r for r in map(Reading.from_json, source) if r.ts.hour == hour]
