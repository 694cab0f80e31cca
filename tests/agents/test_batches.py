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
    async def scenario() -> dict[str, Any]:
        writes, loop, seen = Underway(), asyncio.get_running_loop(), {}
        seen["idle"] = await writes.none(10, rebalance=1)  # nothing under way: no wait
        span = writes.span()
        span.__enter__()
        loop.call_later(0.05, span.__exit__, None, None, None)
        seen["settled"] = await writes.none(10, rebalance=1)  # returns when the write ends
        with writes.span():  # one that does not end ...
            started = loop.time()
            seen["first"] = await writes.none(0.2, rebalance=2)  # ... the first agent waits until the deadline,
            seen["first_waited"] = loop.time() - started
            started = loop.time()
            seen["second"] = await writes.none(0.2, rebalance=2)  # ... the next agents of that rebalance no longer
            seen["second_waited"] = loop.time() - started
            started = loop.time()
            seen["next"] = await writes.none(0.2, rebalance=3)  # ... and the next rebalance waits again
            seen["next_waited"] = loop.time() - started
        return seen

    seen = asyncio.run(scenario())
    assert seen["idle"] and seen["settled"]
    assert not seen["first"] and not seen["second"] and not seen["next"]
    assert 0.15 < seen["first_waited"] < 1.5 and seen["second_waited"] < 0.1 and 0.15 < seen["next_waited"] < 1.5
