"""`bridges.publish`: what goes out on MQTT for a reading (pure; the real broker is in
tests/integration/test_publish_e2e.py)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from bridges.publish import Publisher
from pipeline.drivers import iammeter
from pipeline.models import Reading, format_ts
from tests.frames import vectors

NEM = str(vectors("iammeter")["iammeter-doc-three-phase-nem"]["input"]).encode()
T0 = datetime(2025, 6, 21, 9, tzinfo=UTC)


def nem_reading() -> Reading:
    [reading] = iammeter.decode(NEM, received_at=T0, device_id="M001")
    return reading


def test_state_in_the_evn_decoder_shape_and_discovery_per_key() -> None:
    messages = dict(Publisher().messages(nem_reading()))
    state = json.loads(messages["wattstream/iammeter_M001/state"])
    assert state["PIn"] == {"value": 594.0, "unit": "W"} and state["POut"] == {"value": 0.0, "unit": "W"}
    assert state["WIn"] == {"value": 1275075, "unit": "Wh"} and state["WIn1"] == {"value": 423678, "unit": "Wh"}
    assert (state["U1"], state["I2"], state["P3"]) == ({"value": 225.8, "unit": "V"}, {"value": 1.42, "unit": "A"},
                                                        {"value": 199.0, "unit": "W"})
    assert state["ts"] == "2025-06-21T09:00:00Z"
    assert Reading.from_json(messages["wattstream/iammeter_M001/reading"]) == nem_reading()

    configs = {topic.split("/")[3]: json.loads(body) for topic, body in messages.items()
               if topic.startswith("homeassistant/sensor/wattstream_iammeter_M001/")}
    assert set(configs) == set(state) - {"ts"}  # one sensor per quantity
    energy = configs["WIn2"]
    assert (energy["device_class"], energy["state_class"], energy["unit_of_measurement"]) == \
        ("energy", "total_increasing", "Wh")
    assert energy["state_topic"] == "wattstream/iammeter_M001/state"
    assert energy["value_template"] == "{{ value_json['WIn2'].value }}"
    assert energy["device"]["identifiers"] == ["wattstream_iammeter_M001"]
    assert (configs["U3"]["device_class"], configs["U3"]["state_class"]) == ("voltage", "measurement")
    assert "unit_of_measurement" not in configs["PF"]  # a power factor has no unit in Home Assistant
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)


def test_discovery_once_per_meter_and_key_and_export_as_pout() -> None:
    publisher = Publisher()
    publisher.messages(nem_reading())
    exporting = nem_reading().model_copy(update={"total": nem_reading().total.model_copy(update={"power_w": -250.0}),
                                                 "extra": {"temperature_c": 21.5},
                                                 "ts": nem_reading().ts + timedelta(seconds=5)})
    messages = dict(publisher.messages(exporting))
    assert [t for t in messages if t.startswith("homeassistant/")] == \
        ["homeassistant/sensor/wattstream_iammeter_M001/temperature_c/config"]  # only the new key
    state = json.loads(messages["wattstream/iammeter_M001/state"])
    assert (state["PIn"]["value"], state["POut"]["value"], state["P"]["value"]) == (0.0, 250.0, -250.0)


def test_a_reading_not_newer_than_the_last_published_one_is_left_out() -> None:
    publisher, first = Publisher(), nem_reading()
    assert publisher.messages(first)
    assert publisher.messages(first) == []  # sent again after a worker was killed
    assert publisher.messages(first.model_copy(update={"ts": first.ts - timedelta(seconds=1)})) == []  # late
    later = publisher.messages(first.model_copy(update={"ts": first.ts + timedelta(seconds=1)}))
    assert [topic for topic, _ in later] == ["wattstream/iammeter_M001/state", "wattstream/iammeter_M001/reading"]


def test_a_mqtt_json_meter_gets_the_same_state_and_discovery() -> None:
    """Discovery keys on Reading fields, not on drivers: a Shelly Pro 3EM through its preset."""
    from tests.drivers.test_mqtt_json import captured, config, decode

    power, energy = decode(captured("shelly_pro_3em.txt"), config({"preset": "shelly_pro_3em"}))
    energy = energy.model_copy(update={"ts": energy.ts + timedelta(seconds=1)})
    publisher = Publisher()
    messages = dict(publisher.messages(power)) | dict(publisher.messages(energy))
    state = json.loads(messages["wattstream/mqtt_json_shellypro3em/state"])  # after both parts: all keys
    assert state["WIn"] == {"value": 345628, "unit": "Wh"} and state["WOut3"] == {"value": 1247, "unit": "Wh"}
    assert state["PIn"] == {"value": 594.006, "unit": "W"} and state["ts"] == format_ts(energy.ts)
    configs = {topic.split("/")[3] for topic in messages
               if topic.startswith("homeassistant/sensor/wattstream_mqtt_json_shellypro3em/")}
    assert {"PIn", "POut", "U1", "I3", "WIn", "WOut3"} <= configs


def test_discovery_ids_take_only_what_home_assistant_takes() -> None:
    """Home Assistant ignores a discovery config whose topic's ids have other characters than ASCII letters,
    digits, `_` and `-`: a meter id or a sensor name with others still gets a sensor (the state keeps the
    name as it is, and the template reads it from there)."""
    reading = nem_reading().model_copy(update={"meter_id": "mqtt_json:Zähler 1", "extra": {"temp.1": 21.5}})
    messages = dict(Publisher().messages(reading))
    ha = re.compile(r"homeassistant/sensor/(?P<node>[a-zA-Z0-9_-]+)/(?P<object>[a-zA-Z0-9_-]+)/config")
    configs = {topic: json.loads(body) for topic, body in messages.items() if topic.startswith("homeassistant/")}
    assert configs and all(ha.fullmatch(topic) for topic in configs)
    config = configs["homeassistant/sensor/wattstream_mqtt_json_Z_hler_1/temp_1/config"]
    assert config["unique_id"] == "wattstream_mqtt_json_Z_hler_1_temp_1"
    assert config["value_template"] == "{{ value_json['temp.1'].value }}"
    assert json.loads(messages[config["state_topic"]])["temp.1"] == {"value": 21.5, "unit": ""}
