"""What the file sink has surely written: the length of each file it appends to and, per input
partition, the next offset whose records it does not have and the partition's history
(`sinks.Position`). One small JSON file, replaced atomically (written beside, fsynced, renamed).

Appending is not atomic: a kill or a power cut can come after some lines of a batch reached a file and
before the journal says so. So, per batch: files not in the journal yet are entered with their length
first (`begin`), then the lines are appended and fsynced, then the new lengths and positions are
recorded (`commit`). Before each batch, every file is cut back to its recorded length (`restore`):
what a killed or failed batch left half-written is gone, and since the positions do not include that
batch, the agent writes it again. One worker per files directory.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from pipeline.sinks import Position

log = logging.getLogger(__name__)


class Journal:
    def __init__(self, directory: Path, name: str = ".wattstream-files.json") -> None:
        self._dir = directory
        self._path = directory / name
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            data = {"files": {}, "through": {}}
        self.files: dict[str, int] = data["files"]  # file name → its length once the last batch was written
        # `<topic>/<partition>` → its history and the next offset not written (a bare offset, as written before
        # positions had a history, belongs to no history: it is not taken)
        self.through: dict[str, Position] = {source: Position(*kept) for source, kept in data["through"].items()
                                             if isinstance(kept, list)}

    def restore(self) -> None:
        """Cut every file back to its recorded length (the part of a batch a kill left behind)."""
        for name, length in self.files.items():
            path = self._dir / name
            if path.exists() and path.stat().st_size > length:
                log.warning("%s: cutting %d bytes a stopped or failed batch left behind; they are written again",
                            path, path.stat().st_size - length)
                os.truncate(path, length)

    def begin(self, paths: Iterable[Path]) -> None:
        """Before appending to `paths`: enter the ones the journal does not know yet, with their length."""
        new = {path.name: path.stat().st_size if path.exists() else 0 for path in paths if path.name not in self.files}
        if new:
            self.files |= new
            self._save()

    def commit(self, lengths: Mapping[str, int], through: Mapping[str, Position]) -> None:
        """After the lines are appended and fsynced: the files' new lengths and the input's positions. Files
        the batch did not touch are left out (nothing can be pending in them)."""
        self.files = dict(lengths)
        self.through |= through
        self._save()

    def _save(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        partial = self._path.with_suffix(".tmp")
        with partial.open("w") as out:
            json.dump({"files": self.files, "through": self.through}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, self._path)
        directory = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
