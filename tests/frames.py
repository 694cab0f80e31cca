"""Loading the captured frames under tests/frames/."""

import json
from pathlib import Path
from typing import Any

FRAMES = Path(__file__).parent / "frames"


def vectors(driver: str) -> dict[str, dict[str, Any]]:
    """The entries of tests/frames/<driver>/vectors.json by id."""
    entries = json.loads((FRAMES / driver / "vectors.json").read_text())
    return {entry["id"]: entry for entry in entries}
