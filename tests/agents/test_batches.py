"""`agents.batches.parts`: a batch applied in parts by input size, in order, none empty; `outbox.Underway`:
how long a rebalance waits for the table writes under way."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from pipeline.agents.batches import parts
from pipeline.agents.outbox import Underway


def events(*sizes: int) -> list[Any]:
    return [SimpleNamespace(value=b"x" * size, n=i) for i, size in enumerate(sizes)]


def test_a_batch_is_cut_where_its_values_pass_the_bound() -> None:
    batch = events(40, 40, 30, 90, 10, 200, 5)
    cut = parts(batch, most=100)
    assert [[e.n for e in part] for part in cut] == [[0, 1], [2], [3, 4], [5], [6]]
    assert [e for part in cut for e in part] == batch
    assert [[e.n for e in part] for part in parts(events(10, 10), most=100)] == [[0, 1]]
    assert parts([], most=100) == []


def test_a_rebalance_waits_for_table_writes_under_way_once_for_all_agents() -> None:
    async def scenario() -> tuple[bool, bool, bool, float, bool]:
        writes = Underway()
        idle = await writes.none(within=10)  # nothing under way: no wait
        await writes.started()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, lambda: loop.create_task(writes.ended()))
        settled = await writes.none(within=10)  # returns when the write ends, long before the deadline
        await writes.started()  # one that does not end: the first agent waits until the deadline ...
        first = await writes.none(within=0.2)
        started = loop.time()
        second = await writes.none(within=0.2)  # ... and the next agents of that rebalance no longer
        return idle, settled, first, loop.time() - started, second

    idle, settled, first, waited, second = asyncio.run(scenario())
    assert idle and settled and not first and not second
    assert waited < 0.1
