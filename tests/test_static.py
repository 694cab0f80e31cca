"""The house rules that tools can check: ruff and mypy strict over every package, topic names in one place."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGES = ("pipeline", "bridges", "simulators", "wattstream")


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)


def test_ruff() -> None:
    result = run("ruff", "check", *PACKAGES, "tests", "scripts")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_topic_names_live_in_topics_py() -> None:
    """A topic's name is spelled once, in pipeline/topics.py; everything else imports it."""
    offenders = [
        f"{path.relative_to(ROOT)}" for package in PACKAGES for path in ROOT.glob(f"{package}/**/*.py")
        if path.name != "topics.py" and any(f'"{name}' in path.read_text()
                                             for name in ("meter.raw", "meter.readings", "meter.deadletter"))
    ]
    assert offenders == []
