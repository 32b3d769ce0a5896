"""What a room looks like right now, folded from bus events: the console's and MQTT's `state`.

`RoomStatus.apply` is cheap and synchronous; consumers that need a snapshot (a console that
just connected, the retained MQTT state) call `snapshot`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sessiond.model import (
    AlarmState,
    AlarmTransition,
    DeviceStatus,
    Event,
    NurseAction,
    Phase,
    PhaseChanged,
    Reading,
    Route,
    SessionStarted,
)
from sessiond.wire import alarm_json, reading_json


@dataclass(slots=True)
class SessionInfo:
    session_id: str
    route: Route
    started_t: float
    dose_t: float | None = None


class RoomStatus:
    """The latest readings, session, phase, active alarms and device links of one room."""

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.session: SessionInfo | None = None
        self.phase: Phase | None = None
        self.readings: dict[str, Reading] = {}
        self.alarms: dict[str, AlarmTransition] = {}
        self.devices: dict[str, DeviceStatus] = {}
        #: Alarms whose audio a nurse acknowledged for their current occurrence.
        self.acknowledged: set[str] = set()

    def apply(self, event: Event) -> None:
        match event:
            case Reading():
                self.readings[event.device] = event
            case AlarmTransition():
                before = self.alarms.get(event.alarm_id)
                if event.state is AlarmState.CLEARED:
                    self.alarms.pop(event.alarm_id, None)
                else:
                    self.alarms[event.alarm_id] = event
                # An acknowledgement holds for one occurrence at its priority: a new
                # occurrence or an escalation sounds again.
                if (
                    before is None
                    or event.state is AlarmState.CLEARED
                    or (event.priority > before.priority)
                ):
                    self.acknowledged.discard(event.alarm_id)
            case PhaseChanged():
                self.phase = event.phase
            case SessionStarted():
                self.session = SessionInfo(event.session_id, event.route, event.t, event.dose_t)
                self.readings.clear()
            case NurseAction(action="dose") if self.session is not None:
                self.session.dose_t = event.t
            case NurseAction(action="ack"):
                self.acknowledged.add(str(event.detail["alarm_id"]))
            case DeviceStatus():
                self.devices[event.device] = event
            case _:
                pass

    def snapshot(self, now: float) -> dict[str, Any]:
        """The whole status as JSON-ready data; times are session-clock seconds."""
        session: dict[str, Any] | None = None
        if self.session is not None:
            dose = self.session.dose_t
            session = {
                "id": self.session.session_id,
                "route": self.session.route.value,
                "started_t": round(self.session.started_t, 3),
                "dose_t": None if dose is None else round(dose, 3),
                "seconds_since_start": round(now - self.session.started_t, 1),
                "seconds_since_dose": None if dose is None else round(now - dose, 1),
            }
        return {
            "type": "status",
            "room": self.room_id,
            "t": round(now, 3),
            "session": session,
            "phase": None if self.phase is None else self.phase.value,
            "readings": {name: reading_json(r) for name, r in self.readings.items()},
            "alarms": [
                {**alarm_json(a), "acknowledged": a.alarm_id in self.acknowledged}
                for a in self.alarms.values()
            ],
            "devices": {
                name: {"connected": d.connected, "detail": d.detail}
                for name, d in self.devices.items()
            },
        }
