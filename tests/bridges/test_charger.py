"""`bridges.charger.Dispatcher`: which charger gets which signal when (pure; the real broker and
worker are in tests/integration/test_charger_e2e.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridges.charger import Dispatcher
from pipeline.models import SurplusSignal
from pipeline.settings import Charger

T0 = datetime(2025, 6, 21, 9, tzinfo=UTC)
CHARGERS = (Charger(name="garage", format="wattstream", interval_seconds=0),
            Charger(name="evse", format="openevse", interval_seconds=5))


def signal(seconds: int, charge: bool) -> SurplusSignal:
    return SurplusSignal(site="home", ts=T0 + timedelta(seconds=seconds), grid_w=-4200.0, surplus_w=4200.0,
                         charge=charge, phases=3, current_a=6.0 if charge else 0.0,
                         power_w=4140.0 if charge else 0.0, reason="test")


def test_a_decision_sent_again_is_not_acted_on_twice() -> None:
    dispatcher = Dispatcher(CHARGERS)
    assert [c.name for c, _ in dispatcher.messages(signal(0, False), now=0.0)] == ["garage", "evse"]
    assert dispatcher.messages(signal(0, False), now=10.0) == []  # the same decision, after a worker was killed
    assert dispatcher.messages(signal(-10, True), now=20.0) == []  # older than the last one
    assert [c.name for c, _ in dispatcher.messages(signal(10, True), now=30.0)] == ["garage", "evse"]


def test_openevse_gets_at_most_one_value_per_interval_and_ours_every_change() -> None:
    dispatcher = Dispatcher(CHARGERS)
    dispatcher.messages(signal(0, False), now=0.0)
    assert [c.name for c, _ in dispatcher.messages(signal(1, True), now=1.0)] == ["garage"]
    assert [c.name for c, _ in dispatcher.messages(signal(2, True), now=2.0)] == ["garage"]
    assert [c.name for c, _ in dispatcher.messages(signal(6, True), now=6.0)] == ["garage", "evse"]
