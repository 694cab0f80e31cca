"""`agents.batches.parts`: a batch applied in parts by input size, in order, none empty."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pipeline.agents.batches import parts


def events(*sizes: int) -> list[Any]:
    return [SimpleNamespace(value=b"x" * size, n=i) for i, size in enumerate(sizes)]


def test_a_batch_is_cut_where_its_values_pass_the_bound() -> None:
    batch = events(40, 40, 30, 90, 10, 200, 5)
    cut = parts(batch, most=100)
    assert [[e.n for e in part] for part in cut] == [[0, 1], [2], [3, 4], [5], [6]]
    assert [e for part in cut for e in part] == batch
    assert [[e.n for e in part] for part in parts(events(10, 10), most=100)] == [[0, 1]]
    assert parts([], most=100) == []
