"""`wattstream bench --latency` measures through the real processes: every grid publish is answered by
the charger, and the report says so. (The figures themselves come from running it, not from a test.)"""

from __future__ import annotations

import re

import pytest

from pipeline.bench_latency import run_latency


def test_every_grid_publish_reaches_the_charger_and_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_latency(seconds=4, rate=2, others=20) == 0
    report = capsys.readouterr().out
    found = re.search(r"p50 (\d+) ms\s+p90 (\d+) ms\s+p99 (\d+) ms\s+max (\d+) ms\s+\((\d+) of (\d+) answered\)",
                      report)
    assert found, report
    p50, p90, p99, top, answered, published = map(int, found.groups())
    assert answered == published == 8
    assert 0 < p50 <= p90 <= p99 <= top
