"""Home Assistant MQTT discovery for one room: pure builders of the per-entity configs.

Single-component discovery (one retained config per entity, all sharing one `device` block),
which recent Home Assistant, openHAB and Domoticz all read. Topics are
`<discovery prefix>/<component>/<node id>/<object id>/config`; the bridge publishes them
retained on every connect and again when `<discovery prefix>/status` says `online`.

The entities read the bridge's own topics (DESIGN §7): the phase and the music volume from
`state`, the alarms from `alarm` (a JSON list, most urgent first), the vitals from `vitals`.
The volume is a `number` whose command goes to `cmd/volume` as the user `homeassistant`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sessiond.model import Phase, Priority

DEFAULT_DISCOVERY_PREFIX = "homeassistant"
#: The user Home Assistant's commands are attributed to in the record.
HA_USER = "homeassistant"
#: Vitals sensors turn `unavailable` when no `vitals` message came for this long (s).
VITALS_EXPIRE_S = 30

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class DiscoveryMessage:
    topic: str
    payload: str


def status_topic(discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX) -> str:
    """Home Assistant's birth and last-will topic (`online` / `offline`)."""
    return f"{discovery_prefix}/status"


def node_id(prefix: str, room_id: str) -> str:
    """The stable id of the room's device, usable in topics and unique ids."""
    return _UNSAFE_ID.sub("_", f"{prefix}_{room_id}")


def device_block(prefix: str, room_id: str, sw_version: str) -> dict[str, Any]:
    return {
        "identifiers": [node_id(prefix, room_id)],
        "name": f"sessiond {room_id}",
        "manufacturer": "sessiond",
        "model": "sessiond room daemon",
        "sw_version": sw_version,
    }


def _vital(key: str, name: str, unit: str, precision: int) -> dict[str, Any]:
    return {
        "component": "sensor",
        "object_id": key,
        "name": name,
        "topic": "vitals",
        "qos": 0,
        # Missing values render as None, which Home Assistant shows as unknown.
        "value_template": f"{{{{ value_json.{key} | default(none) }}}}",
        "unit_of_measurement": unit,
        "state_class": "measurement",
        "suggested_display_precision": precision,
        "expire_after": VITALS_EXPIRE_S,
    }


def _bp(key: str, name: str) -> dict[str, Any]:
    # BP comes every 10-30 minutes: no expiry, the availability topic says when we are gone.
    out = _vital(key, name, "mmHg", 0)
    del out["expire_after"]
    return out


def _entities() -> list[dict[str, Any]]:
    """Each entity: its component, object id, the bridge topic it reads and its own keys."""
    any_alarm = "value_json | length > 0"
    return [
        {
            "component": "sensor",
            "object_id": "phase",
            "name": "Phase",
            "topic": "state",
            "value_template": "{{ value_json.phase if value_json.phase else 'none' }}",
            "device_class": "enum",
            "options": ["none", *(p.value for p in Phase)],
            "icon": "mdi:timeline-clock-outline",
        },
        {
            "component": "sensor",
            "object_id": "minutes_since_dose",
            "name": "Minutes since dose",
            "topic": "state",
            "value_template": (
                "{{ value_json.session.minutes_since_dose if value_json.session else none }}"
            ),
            "unit_of_measurement": "min",
            "device_class": "duration",
            "suggested_display_precision": 0,
        },
        {
            "component": "binary_sensor",
            "object_id": "alarm_active",
            "name": "Alarm active",
            "topic": "alarm",
            "value_template": f"{{{{ 'ON' if {any_alarm} else 'OFF' }}}}",
            "device_class": "problem",
            "json_attributes_template": "{{ {'alarms': value_json} | tojson }}",
        },
        {
            "component": "sensor",
            "object_id": "highest_alarm",
            "name": "Highest alarm",
            "topic": "alarm",
            "value_template": f"{{{{ value_json[0].id if {any_alarm} else 'none' }}}}",
            "json_attributes_template": (
                f"{{{{ (value_json[0] if {any_alarm} else {{}}) | tojson }}}}"
            ),
            "icon": "mdi:alarm-light-outline",
        },
        {
            "component": "sensor",
            "object_id": "alarm_priority",
            "name": "Alarm priority",
            "topic": "alarm",
            "value_template": f"{{{{ value_json[0].priority if {any_alarm} else 'none' }}}}",
            "device_class": "enum",
            "options": ["none", *(p.label for p in Priority)],
        },
        {
            "component": "number",
            "object_id": "volume",
            "name": "Music volume",
            "topic": "state",
            "value_template": ("{{ value_json.music.volume_pct if value_json.music else 0 }}"),
            "command": "volume",
            "command_template": (
                '{"volume": {{ value | int }}, "pinned": false, "user": "' + HA_USER + '"}'
            ),
            "min": 0,
            "max": 100,
            "step": 1,
            "mode": "slider",
            "unit_of_measurement": "%",
            "icon": "mdi:volume-medium",
        },
        _vital("spo2", "SpO2", "%", 0),
        _vital("pr", "Pulse rate", "bpm", 0),
        _vital("pi", "Perfusion index", "%", 1),
        _bp("sys", "Systolic BP"),
        _bp("dia", "Diastolic BP"),
    ]


def discovery_messages(
    *,
    prefix: str,
    room_id: str,
    sw_version: str,
    discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX,
) -> list[DiscoveryMessage]:
    """Every entity's retained config message for the room under `prefix/room_id`."""
    base = f"{prefix}/{room_id}"
    node = node_id(prefix, room_id)
    device = device_block(prefix, room_id, sw_version)
    origin = {"name": "sessiond", "sw_version": sw_version}
    out = []
    for entity in _entities():
        config = dict(entity)
        component = config.pop("component")
        object_id = config.pop("object_id")
        topic = config.pop("topic")
        command = config.pop("command", None)
        payload: dict[str, Any] = {
            "name": config.pop("name"),
            "has_entity_name": True,
            "unique_id": f"{node}_{object_id}",
            "state_topic": f"{base}/{topic}",
            "availability_topic": f"{base}/availability",
            "payload_available": "online",
            "payload_not_available": "offline",
            "qos": config.pop("qos", 1),
            "device": device,
            "origin": origin,
            **config,
        }
        if command is not None:
            payload["command_topic"] = f"{base}/cmd/{command}"
        if "json_attributes_template" in payload:
            payload["json_attributes_topic"] = f"{base}/{topic}"
        out.append(
            DiscoveryMessage(
                topic=f"{discovery_prefix}/{component}/{node}/{object_id}/config",
                payload=json.dumps(payload, separators=(",", ":"), sort_keys=True),
            )
        )
    return out
