"""The house rules that tools can check: ruff everywhere, mypy strict on drivers, models and topics."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)


def test_ruff() -> None:
    result = run("ruff", "check", "pipeline", "bridges", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_topic_names_live_in_topics_py() -> None:
    """STYLE 4: no topic name spelled outside pipeline/topics.py."""
    offenders = [
        f"{path.relative_to(ROOT)}" for path in [*ROOT.glob("pipeline/**/*.py"), *ROOT.glob("bridges/**/*.py")]
        if path.name != "topics.py" and any(f'"{name}' in path.read_text()
                                             for name in ("meter.raw", "meter.readings", "meter.deadletter"))
    ]
    assert offenders == []
