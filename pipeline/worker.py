"""Running a Faust app as a worker process: INT/TERM/HUP stop it cleanly, USR1 toggles debug logs, USR2 writes
the stack of every thread and asyncio task to stderr (for a worker that hangs)."""

from __future__ import annotations

import logging
import signal

import faust


class Worker(faust.Worker):
    def _install_signal_handlers_unix(self) -> None:
        super()._install_signal_handlers_unix()
        self.loop.add_signal_handler(signal.SIGHUP, self._on_sigterm)

    def _on_sigusr1(self) -> None:
        toggle_debug()

    def _on_sigusr2(self) -> None:  # mode's own enters pdb, which a worker without a terminal cannot use
        self.add_future(self._cry())


def toggle_debug() -> None:
    """USR1: flip the root logger between DEBUG and INFO (kei's convention)."""
    root = logging.getLogger()
    root.setLevel(logging.INFO if root.level == logging.DEBUG else logging.DEBUG)
    root.warning("log level now %s", logging.getLevelName(root.level))


def run_worker(app: faust.App, loglevel: str) -> None:
    Worker(app, loglevel=loglevel).execute_from_commandline()
