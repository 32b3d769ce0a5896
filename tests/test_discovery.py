"""Home Assistant discovery: per-entity retained configs that read the bridge's own topics."""

from __future__ import annotations

import json
from typing import Any

from sessiond.room.discovery import (
    HA_USER,
    discovery_messages,
    node_id,
    status_topic,
)
from sessiond.room.mqtt import _Volume


def configs(**kwargs: str) -> dict[str, Any]:
    args = {"prefix": "sessiond", "room_id": "room-1", "sw_version": "1.2.3", **kwargs}
    return {m.topic: json.loads(m.payload) for m in discovery_messages(**args)}


def test_topics_are_per_entity_under_the_discovery_prefix():
    """Each entity has `homeassistant/<component>/<node>/<object>/config`."""
    topics = set(configs())
    assert topics == {
        "homeassistant/sensor/sessiond_room-1/phase/config",
        "homeassistant/sensor/sessiond_room-1/minutes_since_dose/config",
        "homeassistant/binary_sensor/sessiond_room-1/alarm_active/config",
        "homeassistant/sensor/sessiond_room-1/highest_alarm/config",
        "homeassistant/sensor/sessiond_room-1/alarm_priority/config",
        "homeassistant/number/sessiond_room-1/volume/config",
        "homeassistant/sensor/sessiond_room-1/spo2/config",
        "homeassistant/sensor/sessiond_room-1/pr/config",
        "homeassistant/sensor/sessiond_room-1/pi/config",
        "homeassistant/sensor/sessiond_room-1/sys/config",
        "homeassistant/sensor/sessiond_room-1/dia/config",
    }
    assert status_topic() == "homeassistant/status"


def test_discovery_prefix_and_node_id_are_configurable_and_safe():
    """Another discovery prefix moves every config; a prefix with `/` still makes a valid id."""
    topics = set(configs(discovery_prefix="ha", prefix="clinic/a"))
    assert all(t.startswith("ha/") and "/clinic_a_room-1/" in t for t in topics)
    assert node_id("clinic/a", "room 1") == "clinic_a_room_1"
    assert status_topic("ha") == "ha/status"


def test_every_entity_shares_the_device_and_the_availability_topic():
    """One device per room; each entity goes unavailable with the daemon."""
    all_configs = list(configs().values())
    devices = {json.dumps(c["device"], sort_keys=True) for c in all_configs}
    assert len(devices) == 1
    device = all_configs[0]["device"]
    assert device["identifiers"] == ["sessiond_room-1"]
    assert device["name"] == "sessiond room-1"
    assert device["sw_version"] == "1.2.3"
    for c in all_configs:
        assert c["availability_topic"] == "sessiond/room-1/availability"
        assert c["payload_available"] == "online"
        assert c["payload_not_available"] == "offline"
        assert c["origin"]["name"] == "sessiond"


def test_unique_ids_are_stable_and_distinct():
    """The same room gives the same ids every time; rooms never collide."""
    first = [c["unique_id"] for c in configs().values()]
    again = [c["unique_id"] for c in configs(sw_version="9.9.9").values()]
    other = {c["unique_id"] for c in configs(room_id="room-2").values()}
    assert first == again
    assert len(set(first)) == len(first)
    assert not set(first) & other


def test_entities_read_the_bridge_topics():
    """Phase and volume from `state`, alarms from `alarm`, vitals from `vitals`."""
    c = configs()
    base = "homeassistant/{}/sessiond_room-1/{}/config"
    phase = c[base.format("sensor", "phase")]
    assert phase["state_topic"] == "sessiond/room-1/state"
    assert "value_json.phase" in phase["value_template"]
    assert set(phase["options"]) >= {"none", "baseline", "onset", "effect", "recovery", "ended"}
    alarm = c[base.format("binary_sensor", "alarm_active")]
    assert alarm["state_topic"] == "sessiond/room-1/alarm"
    assert alarm["device_class"] == "problem"
    highest = c[base.format("sensor", "highest_alarm")]
    assert "value_json[0].id" in highest["value_template"]
    for key, unit in {"spo2": "%", "pr": "bpm", "pi": "%", "sys": "mmHg", "dia": "mmHg"}.items():
        vital = c[base.format("sensor", key)]
        assert vital["state_topic"] == "sessiond/room-1/vitals"
        assert vital["unit_of_measurement"] == unit
        assert f"value_json.{key}" in vital["value_template"]
        assert vital["state_class"] == "measurement"
        assert vital["qos"] == 0


def test_volume_number_commands_pass_the_bridge_validation():
    """HA's rendered volume command is a valid `cmd/volume` (attributed to Home Assistant)."""
    volume = configs()["homeassistant/number/sessiond_room-1/volume/config"]
    assert volume["command_topic"] == "sessiond/room-1/cmd/volume"
    assert (volume["min"], volume["max"], volume["step"]) == (0, 100, 1)
    assert "value_json.music.volume_pct" in volume["value_template"]
    rendered = volume["command_template"].replace("{{ value | int }}", "45")
    command = _Volume.model_validate_json(rendered)
    assert (command.volume, command.pinned, command.user) == (45, False, HA_USER)
