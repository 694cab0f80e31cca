"""`agents.turns`: an agent at work hands the event loop on once per slice of its work, not more often."""

from __future__ import annotations

import asyncio

from pipeline.agents.turns import Turns


def test_the_loop_runs_others_once_per_slice_of_work() -> None:
    clock = [0.0]

    async def scenario() -> list[float]:
        others_ran: list[float] = []  # the work done (clock) each time another task got the loop

        async def other() -> None:
            while True:
                others_ran.append(clock[0])
                await asyncio.sleep(0)

        task = asyncio.create_task(other())
        await asyncio.sleep(0)  # (it starts)
        others_ran.clear()
        sharing = Turns(0.005, clock=lambda: clock[0])
        for _ in range(23):  # 23 pieces of 1 ms of work
            clock[0] = round(clock[0] + 0.001, 3)
            await sharing.share()
        task.cancel()
        return others_ran

    assert asyncio.run(scenario()) == [0.005, 0.01, 0.015, 0.02]
