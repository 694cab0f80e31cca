"""`wattstream bench --latency` measures through the real processes: every grid publish is answered by
the charger, the report says so and where the time went, and the other meters' load reaches the
pipeline. (The figures themselves come from running it, not from a test.)"""

from __future__ import annotations

import re

import pytest

from wattstream.bench.latency import _per_minute, run_latency


def test_every_grid_publish_reaches_the_charger_and_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_latency(seconds=4, rate=2, others=20) == 0
    report = capsys.readouterr().out
    found = re.search(r"p50 (\d+) ms\s+p90 (\d+) ms\s+p99 (\d+) ms\s+max (\d+) ms\s+\((\d+) of (\d+) answered\)",
                      report)
    assert found, report
    p50, p90, p99, top, answered, published = map(int, found.groups())
    assert answered == published == 8
    assert 0 < p50 <= p90 <= p99 <= top
    hops = re.search(r"where the time went \((\d+) publishes.*\n((?:  .+\n){4})", report)
    assert hops, report
    assert int(hops[1]) == 8  # every publish found at each stamp: the raw record, site reading, signal
    spans = [list(map(int, line.split()[-2:])) for line in hops[2].splitlines()]
    assert all(p50 >= -1 for p50, _ in spans), report  # a hop backwards: the wrong records (stamps: whole ms)
    loaded = re.search(r"load: ([\d,]+) payloads of the other meters", report)
    assert loaded and int(loaded[1].replace(",", "")) >= 20 * 4, report  # 20 meters, for more than 4 s


def test_a_run_of_more_than_a_minute_is_also_reported_minute_by_minute() -> None:
    """(Pure.) A system that does not keep up shows as figures that grow from minute to minute."""
    assert _per_minute({0: 10.0, 1: 20.0, 59: 30.0}, rate=1) is None  # one minute: the totals say it all
    assert _per_minute({0: 10.0, 1: 20.0, 120: 30.0, 121: 50.0}, rate=1) == \
        "  per minute, p50 / p99 (ms): 1: 15 / 20, 3: 40 / 50"
    assert _per_minute({0: 10.0, 239: 20.0, 240: 30.0}, rate=4) == \
        "  per minute, p50 / p99 (ms): 1: 15 / 20, 2: 30 / 30"  # four publishes a second
