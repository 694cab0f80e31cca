"""`agents.batches.register_batches` at a rebalance, with a fake Faust app around the real agent: a batch
whose partitions are revoked while it runs drops what it applied only when it ends (never under a part
that is still taking payloads), does not advance its progress, takes no further part after a revoke
during its checkpoint, and a batch that starts while the rebalance is under way applies nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP, EventT

from pipeline.agents import batches
from pipeline.agents.batches import register_batches
from pipeline.agents.outbox import Underway
from pipeline.agents.progress import Progress
from pipeline.agents.state import Batch
from pipeline.settings import WorkerSettings

RAW = TP("meter.raw.test", 0)


class Table(dict[bytes, bytes]):
    """Faust's memory-backed table as the agents use it (`data` is what a changelog write fills)."""

    def __init__(self) -> None:
        super().__init__({Progress.key(RAW): b"0", Progress.history_key(RAW): b"h"})  # nothing applied yet
        self.data = self
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: "decode-test-state-changelog")


class App:
    """What `register_batches` takes from a Faust app: a table, the agent, the timer and two signals."""

    def __init__(self) -> None:
        self.table, self.rebalancing_count = Table(), 1
        self.agent_fn: Callable[[Any], Awaitable[None]] | None = None
        self.revoked: list[Callable[..., Awaitable[None]]] = []
        self.on_partitions_revoked = SimpleNamespace(connect=self.revoked.append)
        self.on_before_shutdown = SimpleNamespace(connect=lambda handler: None)

    def Table(self, *args: Any, **kwargs: Any) -> Table:  # (Faust's name)
        return self.table

    def agent(self, topic: Any, **kwargs: Any) -> Callable[[Any], Any]:
        def register(fn: Callable[[Any], Awaitable[None]]) -> Any:
            self.agent_fn = fn
            return fn
        return register

    def timer(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        return lambda fn: fn


class Stream:
    """The agent's stream: the events put in `arrive`; `asked` is set whenever the agent wants the next one
    (so the one before is done)."""

    def __init__(self) -> None:
        self.arrive: asyncio.Queue[EventT[bytes]] = asyncio.Queue()
        self.asked = asyncio.Event()

    async def events(self) -> AsyncIterator[EventT[bytes]]:
        while True:
            self.asked.set()
            event = await self.arrive.get()
            self.asked.clear()
            yield event

    async def take_events(self, most: int, within: float) -> AsyncIterator[list[EventT[bytes]]]:
        """Each event that arrives as a batch of its own, or a list of them as one batch."""
        async for arrived in self.events():
            yield arrived if isinstance(arrived, list) else [arrived]


def event(offset: int) -> Any:
    return SimpleNamespace(message=SimpleNamespace(tp=RAW, partition=RAW.partition, offset=offset),
                           key=b"meter", value=b"x", headers=[])


class Agent:
    """The real batch agent: `process` counts, per event, the state of its key, and holds while `hold` is
    clear."""

    def __init__(self, checkpoint_seconds: float = 3600, batched: bool = False) -> None:
        self.app, self.stream, self.outlet = App(), Stream(), SimpleNamespace(table_writes=Underway())
        self.hold, self.holding = asyncio.Event(), asyncio.Event()
        self.seen: list[tuple[int, int | None]] = []  # (offset, the key's count after it; None: skipped)
        self.kept_under_it: list[bool] = []  # the part's entry still there when it went on
        self.hold.set()
        register_batches(self.app, self.outlet, SimpleNamespace(get_topic_name=lambda: RAW.topic), "decode-test",
                         WorkerSettings(checkpoint_seconds=checkpoint_seconds, rebalance_timeout=60), 1, self.process,
                         batched=batched)
        assert self.app.agent_fn is not None
        self.task = asyncio.create_task(self.app.agent_fn(self.stream))

    async def process(self, events: Sequence[EventT[bytes]], batch: Batch) -> None:
        for e in events:
            entry = batch.take(b"meter", e)
            if entry is None:  # its key's saved state holds it already
                self.seen.append((e.message.offset, None))
                continue
            entry.state = (entry.state or 0) + 1
            self.holding.set()
            await self.hold.wait()
            self.kept_under_it.append(batch.entries.get(b"meter") is entry)
            self.seen.append((e.message.offset, entry.state))

    async def done(self, *events: Any) -> None:
        """`events` arrive (none: what it has), and the agent is done with them."""
        if events:
            self.stream.asked.clear()
            for e in events:
                self.stream.arrive.put_nowait(e)
        while not (self.stream.asked.is_set() and self.stream.arrive.empty()):
            await asyncio.wait_for(self.stream.asked.wait(), 5)
            await asyncio.sleep(0)  # (the generator clears it again when the next event is taken)

    async def revoke(self) -> None:
        await self.app.revoked[0](self.app, revoked={RAW})


def test_a_batch_revoked_while_it_runs_drops_its_state_when_it_ends_and_does_not_advance() -> None:
    async def scenario() -> Agent:
        agent = Agent()
        await agent.done(event(0), event(1))  # applied: the key's count is 2
        agent.hold.clear()
        agent.holding.clear()
        agent.stream.arrive.put_nowait(event(2))
        await asyncio.wait_for(agent.holding.wait(), 5)  # in the middle of its part ...
        await agent.revoke()  # ... its partition is revoked
        agent.hold.set()
        await agent.done()
        await agent.done(event(0))  # the progress went back to the last checkpoint (none): offset 0 again
        agent.task.cancel()
        return agent

    agent = asyncio.run(scenario())
    assert agent.kept_under_it == [True, True, True, True]  # nothing dropped under a part that went on
    assert agent.seen == [(0, 1), (1, 2), (2, 3), (0, 1)]  # state and progress back to the last checkpoint


def test_a_batch_that_starts_while_a_rebalance_is_under_way_applies_nothing() -> None:
    async def scenario() -> tuple[Agent, list[tuple[int, int]]]:
        agent = Agent()
        agent.hold.clear()
        agent.stream.arrive.put_nowait(event(0))
        await asyncio.wait_for(agent.holding.wait(), 5)
        write = agent.outlet.table_writes.span()
        write.__enter__()  # a table write under way: the rebalance waits for it ...
        revoking = asyncio.create_task(agent.revoke())
        await asyncio.sleep(0)
        agent.hold.set()
        await agent.done(event(0))  # ... while the void batch ends, and the next one starts
        during = list(agent.seen)
        write.__exit__(None, None, None)
        await asyncio.wait_for(revoking, 5)
        await agent.done(event(0))
        agent.task.cancel()
        return agent, during

    agent, during = asyncio.run(scenario())
    assert during == [(0, 1)]  # the batch that started during the rebalance did not run
    assert agent.seen == [(0, 1), (0, 1)]  # after it, offset 0 again, from the saved state


def test_a_revoke_during_a_checkpoint_ends_the_batch_before_its_next_part(monkeypatch: pytest.MonkeyPatch) -> None:
    """The states of the part before are in Kafka, its progress not (`Entry.at` tells the next owner); the
    next part of the batch is not this worker's any more."""

    async def scenario() -> tuple[Agent, list[tuple[int, int | None]], list[list[bytes]], bytes]:
        written: list[list[bytes]] = []
        writing, release = asyncio.Event(), asyncio.Event()

        class Changelog:  # the table writes, held until `release` (a slow Kafka)
            def __init__(self, table: Table, outlet: Any) -> None:
                self.table, self.outlet = table, outlet

            async def write(self, writes: Sequence[tuple[int, bytes, bytes]]) -> None:
                if not writes:
                    return
                with self.outlet.table_writes.span():
                    written.append([key for _, key, _ in writes])
                    writing.set()
                    await release.wait()
                for _, key, value in writes:
                    self.table.data[key] = value

        monkeypatch.setattr(batches, "Changelog", Changelog)
        monkeypatch.setattr(batches, "parts", lambda events: [[e] for e in events])  # a part per event
        agent = Agent(checkpoint_seconds=0, batched=True)
        agent.stream.arrive.put_nowait([event(0), event(1)])  # one batch, two parts
        await asyncio.wait_for(writing.wait(), 5)  # the first part's checkpoint: its states on their way ...
        revoking = asyncio.create_task(agent.revoke())
        await asyncio.sleep(0)  # (the rebalance begins: it waits for the write)
        release.set()
        await asyncio.wait_for(revoking, 5)
        await agent.done()
        during, saved = list(agent.seen), agent.app.table[Progress.key(RAW)]
        writes = list(written)
        await agent.done([event(0), event(1)])  # the batch again, from the last checkpoint
        agent.task.cancel()
        return agent, during, writes, saved

    agent, during, writes, saved = asyncio.run(scenario())
    assert during == [(0, 1)]  # the second part was not taken
    assert writes == [[b"meter"]] and saved == b"0"  # the states, not the progress
    assert agent.seen == [(0, 1), (0, None), (1, 2)]  # offset 0 in the saved state already: once each
