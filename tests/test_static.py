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


def test_every_error_is_under_the_one_root() -> None:
    """An error of ours is a `WattstreamError`, so a caller can tell ours from a library's."""
    import importlib
    import inspect
    import pkgutil

    from pipeline.errors import WattstreamError

    strays = []
    for package in PACKAGES:
        for module in pkgutil.walk_packages([str(ROOT / package)], f"{package}."):
            if module.name.endswith("__main__"):
                continue
            loaded = importlib.import_module(module.name)
            strays += [f"{module.name}.{name}" for name, cls in inspect.getmembers(loaded, inspect.isclass)
                       if cls.__module__ == module.name and issubclass(cls, BaseException)
                       and not issubclass(cls, WattstreamError)]
    assert strays == []


def _imports(package: str) -> dict[str, set[str]]:
    """module path → the modules it imports (absolute imports only: the house has no relative ones)."""
    import ast

    found: dict[str, set[str]] = {}
    for path in ROOT.glob(f"{package}/**/*.py"):
        names = found.setdefault(str(path.relative_to(ROOT)), set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
    return found


def test_the_layers_import_downwards_only() -> None:
    """wattstream (the command) → simulators → bridges → pipeline; the pure logic and the drivers read no
    settings (they get plain config objects), so they can be used and tested without any."""
    below = {"pipeline": (), "bridges": ("pipeline",), "simulators": ("pipeline", "bridges"),
             "wattstream": ("pipeline", "bridges", "simulators")}
    ours = set(below)
    wrong = [f"{module} imports {name}" for package, allowed in below.items()
             for module, names in _imports(package).items() for name in names
             if name.split(".")[0] in ours - {package, *allowed}]
    pure = ("pipeline.settings", "pipeline.sites", "pipeline.brokers", "pipeline.agents", "pipeline.sinks")
    wrong += [f"{module} imports {name}" for module, names in _imports("pipeline").items()
              if module.startswith(("pipeline/logic/", "pipeline/drivers/")) for name in names
              if name.startswith(pure)]
    assert wrong == []
