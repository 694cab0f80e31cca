"""Running a Faust app as a worker process: INT/TERM/HUP stop it cleanly, USR1 toggles debug logs, USR2 writes
the stack of every thread and asyncio task to stderr (for a worker that hangs)."""

from __future__ import annotations

import signal

import faust

from pipeline.logs import toggle_debug


class Worker(faust.Worker):
    def _install_signal_handlers_unix(self) -> None:
        super()._install_signal_handlers_unix()
        self.loop.add_signal_handler(signal.SIGHUP, self._on_sigterm)

    def _on_sigusr1(self) -> None:
        toggle_debug()

    def _on_sigusr2(self) -> None:  # mode's own enters pdb, which a worker without a terminal cannot use
        self.add_future(self._cry())


def run_worker(app: faust.App, loglevel: str) -> None:
    Worker(app, loglevel=loglevel).execute_from_commandline()
