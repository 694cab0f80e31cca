"""How every `wattstream` command that runs until it is told to stop (the bridges, `charger`, `publish`,
`simulate`, `run`) stops: INT, TERM and HUP stop it cleanly, USR1 toggles debug logging (`wattstream
run` sends USR1 to all its children), and a command may give USR1 and USR2 more to do (the embedded run
forwards USR1 to its children and rotates Kafka on USR2); without a handler USR2 keeps its default (it
ends the process).

`run_until_signal(main)` runs the coroutine `main(stop)` on a new event loop until it returns: a stop
signal sets `stop`, and `main` ends as soon as it sees it. `block_until_signal(main)` is the same for
blocking code that cannot await an event (the simulated meters): a stop signal raises `KeyboardInterrupt`
in it, which ends it.

The Faust worker (`pipeline.worker.Worker`) keeps Faust's own handling, to the same effect (INT/TERM/HUP
stop it, USR1 toggles debug logging; USR2 writes every thread's and task's stack): Faust installs its
handlers on its loop when it starts, and stops its services in order. Its wait for Kafka, before Faust
starts, runs here. The commands that end by themselves (`decode`, `backtest`, `replay`, `bench`) keep
Python's default: Ctrl-C ends them.

USR1 stays ignored outside these (set at the import of `wattstream.__main__`, before the imports that
take seconds): its default would end the process.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pipeline.logs import toggle_debug

T = TypeVar("T")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[T]], *, usr1: Callable[[], None] | None = None,
                     usr2: Callable[[], None] | None = None) -> T:
    """`main(stop)` on a new event loop until it returns (its result); INT/TERM/HUP set `stop`."""
    on_usr1 = usr1 or toggle_debug

    async def runner() -> T:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, on_usr1)
        if usr2 is not None:
            loop.add_signal_handler(signal.SIGUSR2, usr2)
        return await main(stop)

    try:
        return asyncio.run(runner())
    finally:  # closing the loop gave each signal its default back
        _after()


def block_until_signal(main: Callable[[], T], *, usr1: Callable[[], None] | None = None) -> T | None:
    """`main()` until it returns (its result) or a stop signal ends it (None)."""
    on_usr1 = usr1 or toggle_debug
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.default_int_handler)
    signal.signal(signal.SIGUSR1, lambda _sig, _frame: on_usr1())
    try:
        return main()
    except KeyboardInterrupt:
        return None
    finally:
        _after()


def _after() -> None:
    """Back to what a command starts with: USR1 ignored (its default would end the process), the others
    at their default (a stop signal now ends the process at once, as before any handler was set)."""
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
