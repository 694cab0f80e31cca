"""The child processes of `wattstream run` (and of `bench --latency`): each a `wattstream` command in a
session of its own, its output in a log file."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


def spawn(name: str, argv: list[str], env: dict[str, str], logs: Path,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """`wattstream <argv>` as a child in a session of its own, output to `<logs>/<name>.log`; `cwd` (default:
    ours) is where its settings look for a `.env`."""
    with (logs / f"{name}.log").open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "wattstream", *argv], env=env, stdout=out, cwd=cwd,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def stop_child(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """TERM, and KILL if it has not ended within `timeout` seconds. Its exit code: 0 after a clean stop,
    negative when it had to be killed."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class Children:
    """The run's child processes, each started again with the same command after a rotation."""

    logs: Path
    commands: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str) -> None:
        self.running[name] = spawn(name, *self.commands[name], self.logs)

    def stop(self, names: Iterable[str]) -> dict[str, int]:
        """Stop these (in this order); their exit codes."""
        return {name: stop_child(self.running.pop(name)) for name in names if name in self.running}

    def exited(self) -> list[str]:
        """The ones that exited by themselves (a stop takes a child out of `running` first)."""
        return [name for name, proc in list(self.running.items()) if proc.poll() is not None]
