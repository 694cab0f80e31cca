"""`bridges.charger.Dispatcher` (which charger gets which signal when) and `bridges.charge_modes` (mode
sets, their refusals, discovery); pure: the real broker, worker and charger process are in
tests/integration/test_charger_e2e.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bridges.charge_modes import command, discovery, driven
from bridges.charger import Dispatcher
from pipeline.models import ChargerDecision, ModeCommand, SurplusSignal
from pipeline.sites import Charger

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


def decided(seconds: int, mode: str, current: float) -> SurplusSignal:
    mine = ChargerDecision(charge=current > 0, phases=1, current_a=current, power_w=230 * current, mode=mode,
                           reason=mode)
    other = ChargerDecision(charge=False, phases=3, current_a=0, power_w=0, mode="pv", reason="below")
    return signal(seconds, False).model_copy(update={"chargers": {"car": mine, "000123": other}})


def test_driven_chargers_get_their_own_decision_and_their_mode_state_when_it_changes() -> None:
    car, goe = (Charger(name="car", format="wattstream", interval_seconds=60),
                Charger(name="000123", format="goe", interval_seconds=60))
    dispatcher = Dispatcher((car, goe))
    first = [m for _, m in dispatcher.messages(decided(0, "now", 16), now=0.0)]
    body = json.loads(next(b for t, b, _, _ in first if t == "wattstream/home/surplus"))
    assert (body["charge"], body["current_a"], body["phases"]) == (True, 16, 1)  # its own, not the site's lead
    assert ("/go-eCharger/000123/frc/set", b"1", 1, False) in first  # go-e: off, at the minimum, 3 phases
    assert ("/go-eCharger/000123/psm/set", b"2", 1, False) in first
    assert ("/go-eCharger/000123/amp/set", b"6", 1, False) in first
    assert ("wattstream/home/car/mode", b"now", 1, True) in first
    assert ("wattstream/home/000123/target", b"0", 1, True) in first
    again = [m for _, m in dispatcher.messages(decided(10, "now", 16), now=10.0)]
    assert again == []  # nothing changed, the interval has not passed
    later = [m[0] for _, m in dispatcher.messages(decided(20, "pv", 10), now=20.0)]
    assert later == ["wattstream/home/surplus", "wattstream/home/car/mode", "wattstream/home/car/target"]


CHARGERS_BY_NAME = driven((Charger(name="car", format="wattstream"), Charger(name="evse", format="openevse")))
NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


@pytest.mark.parametrize(("topic", "payload", "expected"), [
    ("wattstream/home/car/mode/set", b"minpv", {"mode": "minpv"}),
    ("wattstream/home/car/mode/set", b'{"mode": "now", "target_kwh": 12.5}', {"mode": "now", "target_kwh": 12.5}),
    ("wattstream/home/car/mode/set", b'{"mode": "now", "until": "2026-12-07T17:00+01:00"}',
     {"mode": "now", "until": datetime(2026, 12, 7, 16, tzinfo=UTC)}),
    ("wattstream/home/car/target/set", b"20", {"mode": "now", "target_kwh": 20.0}),
    ("wattstream/home/car/target/set", b"0", {"mode": "pv"}),
])
def test_mode_sets_become_commands(topic: str, payload: bytes, expected: dict[str, object]) -> None:
    charger, command_ = command(CHARGERS_BY_NAME, topic, payload, NOW)
    assert isinstance(command_, ModeCommand) and charger is not None and charger.name == "car"
    assert command_ == ModeCommand.model_validate({"site": "home", "charger": "car", "at": NOW, **expected})


@pytest.mark.parametrize(("topic", "payload", "error"), [
    ("wattstream/home/car/mode/set", b"turbo", "mode 'turbo' is not one of off, pv, minpv, now"),
    ("wattstream/home/car/mode/set", b'{"mode": "now", "until": "soon"}', "mode now: until: Input should be"),
    ("wattstream/home/car/mode/set", b'{"mode": "pv", "target_kwh": 5}', "goes only with mode now"),
    ("wattstream/home/car/mode/set", b"{nope", "is not JSON"),
    ("wattstream/home/car/target/set", b"lots", "target 'lots' is not a number of kWh"),
    ("wattstream/home/car/target/set", b"nan", "target 'nan' is not a number of kWh"),
    ("wattstream/home/car/target/set", b"-3", "target '-3' is not a number of kWh (0 or more)"),
    ("wattstream/home/car/mode/set", b'{"mode": "now", "until": "2026-12-07T11:00Z"}', "that time has passed"),
    ("wattstream/home/car/target/set", b"5000", "less than or equal to 1000"),
    ("wattstream/home/evse/mode/set", b"now", "no [[charger]] the controller drives"),
])
def test_bad_mode_sets_are_refused_with_a_reason(topic: str, payload: bytes, error: str) -> None:
    _, refused = command(CHARGERS_BY_NAME, topic, payload, NOW)
    assert isinstance(refused, str) and error in refused, refused


def test_home_assistant_sees_a_select_and_a_number() -> None:
    (select_topic, select), (number_topic, number) = discovery(Charger(name="car", format="wattstream"), "ha")
    assert select_topic == "ha/select/wattstream_home_car/mode/config"
    assert json.loads(select)["options"] == ["off", "pv", "minpv", "now"]
    assert json.loads(select)["command_topic"] == "wattstream/home/car/mode/set"
    assert number_topic == "ha/number/wattstream_home_car/target/config"
    assert json.loads(number)["state_topic"] == "wattstream/home/car/target"


def test_openevse_with_a_control_topic_is_driven_by_our_decision() -> None:
    evse = Charger(name="evse", format="openevse", control_topic="openevse", interval_seconds=0)
    assert evse.driven and not Charger(name="evse", format="openevse").driven
    signal_ = decided(0, "pv", 10).model_copy(update={"chargers": {"evse": ChargerDecision(
        charge=True, phases=1, current_a=10, power_w=2300, mode="pv", reason="sun")}})
    sent = [m[:2] for _, m in Dispatcher((evse,)).messages(signal_, now=0.0)]
    assert sent[:3] == [("wattstream/home/grid_ie", b"-4200"), ("openevse/divertmode/set", b"1"),
                        ("openevse/override/set", b'{"state": "active", "charge_current": 10}')]


def test_two_sites_with_a_charger_of_the_same_name_and_a_charger_the_worker_does_not_know() -> None:
    north, south = (Charger(name="car", site=site, format="wattstream", topic=f"wattstream/{site}/surplus",
                            interval_seconds=60) for site in ("north", "south"))
    dispatcher = Dispatcher((north, south))
    for site in ("north", "south"):  # the other site's message does not count against this one's interval
        sent = dispatcher.messages(decided(0, "pv", 10).model_copy(update={"site": site}), now=0.0)
        assert next(m[0] for _, m in sent) == f"wattstream/{site}/surplus"
    stranger = json.loads(dispatcher.messages(decided(10, "pv", 10).model_copy(
        update={"site": "north", "chargers": {"other": decided(0, "now", 16).chargers["car"]}}), now=100.0)[0][1][1])
    assert not stranger["charge"] and stranger["reason"].startswith("no decision for charger car")
