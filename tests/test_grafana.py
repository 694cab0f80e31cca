"""The dashboards checked statically (what every panel runs is checked against InfluxDB in
`integration/test_dashboards_e2e.py`), and the Grafana expansion those checks rely on."""

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from tests.grafana import ROOT, Range, dashboards, expand, interval, panel_range, panels

DATASOURCE = yaml.safe_load((ROOT / "grafana/provisioning/datasources/influxdb.yaml").read_text())["datasources"][0]
NOW = datetime(2026, 6, 21, 10, 30, tzinfo=UTC)


def test_the_four_dashboards_on_the_provisioned_datasource() -> None:
    boards = dashboards()
    assert set(boards) == {"overview", "meter", "surplus", "pipeline"}
    assert len({board["uid"] for board in boards.values()}) == 4
    for name, board in boards.items():
        assert "wattstream" in board["tags"], name
        variables = {v["name"]: v for v in board["templating"]["list"]}
        chosen = variables["datasource"]
        assert (chosen["type"], chosen["query"], chosen["current"]["value"]) == ("datasource", "influxdb",
                                                                                 DATASOURCE["uid"])
        ids = [panel["id"] for panel in panels(board)]
        assert len(ids) == len(set(ids)), name
        for panel in panels(board):
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, (name, panel["title"])
            for target in panel["targets"]:
                # raw InfluxQL on the datasource variable: nothing bound to InfluxDB 2 (Flux) or one server
                assert target["rawQuery"] and "query" in target, (name, panel["title"])
                assert target["datasource"] == {"type": "influxdb", "uid": "${datasource}"}, (name, panel["title"])
                assert "from(bucket" not in target["query"]


def test_every_panel_query_uses_only_known_macros_and_variables() -> None:
    for board in dashboards().values():
        variables = {v["name"]: "x" for v in board["templating"]["list"]}
        for panel in panels(board):
            span = panel_range(board, panel, NOW)
            for target in panel["targets"]:
                expand(target["query"], span, interval(span, panel.get("interval")), variables)


def test_expand_like_grafana() -> None:
    span = Range(NOW - timedelta(hours=1), NOW)
    query = "SELECT mean(x) FROM r WHERE m = '$meter' AND $timeFilter GROUP BY time($__interval) -- $__interval_ms"
    assert expand(query, span, timedelta(seconds=10), {"meter": "iammeter:M000"}) == (
        "SELECT mean(x) FROM r WHERE m = 'iammeter:M000' AND time >= 1782034200000ms and time <= 1782037800000ms "
        "GROUP BY time(10s) -- 10000")
    assert expand("[[site]] ${site}", span, timedelta(minutes=1), {"site": "home"}) == "home home"
    with pytest.raises(ValueError, match="unknown Grafana variable"):
        expand("WHERE m = '$metre'", span, timedelta(seconds=1), {"meter": "m"})


def test_intervals_and_relative_times_like_grafana() -> None:
    hour = Range(NOW - timedelta(hours=1), NOW)
    assert interval(hour, None) == timedelta(seconds=5)  # 3.6 s rounded up
    assert interval(hour, "10s") == timedelta(seconds=10)  # the panel's minimum
    assert interval(Range(NOW - timedelta(hours=6), NOW), None) == timedelta(seconds=30)
    board = {"time": {"from": "now-6h", "to": "now"}}
    assert panel_range(board, {}, NOW) == Range(NOW - timedelta(hours=6), NOW)
    assert panel_range(board, {"timeFrom": "now/d"}, NOW) == Range(datetime(2026, 6, 21, tzinfo=UTC), NOW)
    assert panel_range(board, {"timeFrom": "1h"}, NOW) == hour
