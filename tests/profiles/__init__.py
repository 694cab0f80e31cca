"""Generated days of a grid and a PV meter (`generate.py`): `clear`, `clouds`, `loads`."""

import gzip
from pathlib import Path

from pipeline.models import Reading

PROFILES = Path(__file__).parent
METERS = (PROFILES / "meters.toml").read_text()  # the meters file of the generated site


def hour_of(day: str, hour: int) -> list[Reading]:
    """The readings of one UTC hour of a recorded day, in order."""
    with gzip.open(PROFILES / f"{day}.jsonl.gz") as source:
        return [r for r in map(Reading.from_json, source) if r.ts.hour == hour]
