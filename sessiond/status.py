"""What a room looks like right now, folded from bus events: the console's and MQTT's `state`.

`RoomStatus.apply` is cheap and synchronous (it runs for every reading); consumers that need
a snapshot (a console that just connected, the retained MQTT state) call `snapshot`.

The status may leave the room (MQTT), so it holds no free text a nurse typed: notes and
dose-override reasons are counted or flagged here, and their text stays in the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sessiond.model import (
    AlarmState,
    AlarmTransition,
    AudioPause,
    BaselineCaptured,
    DeviceStatus,
    DischargeReadiness,
    Event,
    Infusion,
    InfusionPrompt,
    NibpFailed,
    NibpRequest,
    NurseAction,
    Phase,
    PhaseChanged,
    Reading,
    RecordGap,
    RoomChanged,
    Route,
    SessionStarted,
    Waveform,
)
from sessiond.wire import alarm_json, infusion_json, prompt_json, reading_json

#: Events of which the status keeps only the latest.
_Latest = (
    AudioPause | NibpRequest | NibpFailed | BaselineCaptured | DischargeReadiness | RoomChanged
)


@dataclass(slots=True)
class SessionInfo:
    session_id: str
    route: Route
    started_t: float
    dose_t: float | None = None
    #: The dose was given over a high `dose_gate`, with a reason (kept in the record).
    dose_override: bool = False
    #: When the session ended (its clocks stop there).
    ended_t: float | None = None


def _t(t: float | None) -> float | None:
    return None if t is None else round(t, 3)


class RoomStatus:
    """The latest readings, session, phase, alarms, device links, BP schedule and room."""

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.session: SessionInfo | None = None
        self.phase: Phase | None = None
        self.readings: dict[str, Reading] = {}
        self.alarms: dict[str, AlarmTransition] = {}
        self.devices: dict[str, DeviceStatus] = {}
        #: Alarms whose audio a nurse acknowledged for their current occurrence.
        self.acknowledged: set[str] = set()
        #: When each shown alarm's occurrence began (its onset, not its last transition).
        self.onsets: dict[str, float] = {}
        #: The last pause or resume of alarm audio (every alarm).
        self.audio_pause: AudioPause | None = None
        #: The session's baseline, fixed at the dose.
        self.baseline: BaselineCaptured | None = None
        #: The session's last discharge-readiness change (None: not evaluated yet).
        self.discharge: DischargeReadiness | None = None
        #: The session's last BP measurement request and last failed measurement.
        self.nibp_request: NibpRequest | None = None
        self.nibp_failed: NibpFailed | None = None
        #: The room's last set and setting (lights, music, overrides).
        self.room: RoomChanged | None = None
        #: Notes added in this session; their text is never held here.
        self.notes = 0
        self.last_note_t: float | None = None
        #: The session's infusion (its start was the dose), and the prompt while it is shown.
        self.infusion: Infusion | None = None
        self.prompt: InfusionPrompt | None = None
        #: The session's checklists as last confirmed: kind -> t, user, checked, missing.
        self.checklists: dict[str, dict[str, Any]] = {}

    def apply(self, event: Event) -> None:
        match event:
            case Reading():
                self.readings[event.device] = event
            case AlarmTransition():
                self._alarm(event)
            case PhaseChanged():
                self.phase = event.phase
                if self.session is not None:
                    self.session.ended_t = event.t if event.phase is Phase.ENDED else None
            case SessionStarted():
                self._new_session(event)
            case NurseAction():
                self._action(event)
            case DeviceStatus():
                self.devices[event.device] = event
            case RecordGap() | Waveform():
                pass  # the record's concern / the console's pleth, not the room's state
            case InfusionPrompt():
                self.prompt = event if event.active else None
            case _:
                self._latest(event)

    def _latest(self, event: _Latest) -> None:
        match event:
            case AudioPause():
                self.audio_pause = event
            case NibpRequest():
                self.nibp_request = event
            case NibpFailed():
                self.nibp_failed = event
            case BaselineCaptured():
                self.baseline = event
            case DischargeReadiness():
                self.discharge = event
            case RoomChanged():
                self.room = event

    def _alarm(self, event: AlarmTransition) -> None:
        before = self.alarms.get(event.alarm_id)
        if event.state is AlarmState.CLEARED:
            self.alarms.pop(event.alarm_id, None)
            self.onsets.pop(event.alarm_id, None)
        else:
            self.alarms[event.alarm_id] = event
            if before is None:
                self.onsets[event.alarm_id] = event.t
        # An acknowledgement holds for one occurrence at its priority: a new occurrence or
        # an escalation sounds again.
        if event.restored:
            if event.acknowledged:
                self.acknowledged.add(event.alarm_id)
        elif (
            before is None
            or event.state is AlarmState.CLEARED
            or event.priority > before.priority
            or (before.state is AlarmState.LATCHED and event.state is AlarmState.ACTIVE)
        ):
            self.acknowledged.discard(event.alarm_id)

    def _new_session(self, event: SessionStarted) -> None:
        # A new session is a new patient: nothing of the last one may show as theirs.
        self.session = SessionInfo(event.session_id, event.route, event.t, event.dose_t)
        self.readings.clear()
        self.baseline = None
        self.discharge = None
        self.nibp_request = None
        self.nibp_failed = None
        self.session.dose_override = event.dose_override
        self.notes = event.notes
        self.last_note_t = None
        self.infusion = event.infusion
        self.prompt = None
        self.checklists = {}

    def _action(self, event: NurseAction) -> None:
        match event.action:
            case "dose" if self.session is not None:
                self.session.dose_t = event.t
                self.session.dose_override = bool(event.detail.get("override_reason"))
            case "ack":
                self.acknowledged.add(str(event.detail["alarm_id"]))
            case "note":
                self.notes += 1
                self.last_note_t = event.t
            case action if action.startswith("infusion_") and self.session is not None:
                self.infusion = Infusion.fold(self.infusion, event)
            case "checklist":
                d = event.detail
                self.checklists[str(d.get("kind"))] = {
                    "t": _t(event.t),
                    "user": event.user,
                    "checked": list(d.get("checked", [])),
                    "missing": list(d.get("missing", [])),
                    "override": "override_reason" in d,
                }
            case _:
                pass

    def snapshot(self, now: float) -> dict[str, Any]:
        """The whole status as JSON-ready data; times are session-clock seconds."""
        return {
            "type": "status",
            "room": self.room_id,
            "t": round(now, 3),
            "session": self._session_json(now),
            "phase": None if self.phase is None else self.phase.value,
            "readings": {name: reading_json(r) for name, r in self.readings.items()},
            "alarms": [
                {
                    **alarm_json(a),
                    "acknowledged": a.alarm_id in self.acknowledged,
                    "onset_t": _t(self.onsets.get(a.alarm_id, a.t)),
                }
                for a in self.alarms.values()
            ],
            "audio_pause": self._pause_json(now),
            "devices": {
                name: {"connected": d.connected, "detail": d.detail}
                for name, d in self.devices.items()
            },
            "baseline": self._baseline_json(),
            "discharge": self._discharge_json(),
            "nibp": self._nibp_json(),
            "room_setting": self._room_json(),
            "notes": {"count": self.notes, "last_t": _t(self.last_note_t)},
            "checklists": self.checklists,
            "infusion": self.infusion_json(now),
        }

    def infusion_json(self, now: float) -> dict[str, Any] | None:
        """The session's infusion now, with the prompt while it is shown (no free text)."""
        if self.infusion is None:
            return None
        prompt = self.prompt
        return {
            **infusion_json(self.infusion, now),
            "prompt": None if prompt is None else prompt_json(prompt),
        }

    def _session_json(self, now: float) -> dict[str, Any] | None:
        s = self.session
        if s is None:
            return None
        dose = s.dose_t
        return {
            "id": s.session_id,
            "route": s.route.value,
            "started_t": round(s.started_t, 3),
            "dose_t": _t(dose),
            "dose_override": s.dose_override,
            "ended_t": _t(s.ended_t),
            "seconds_since_start": round(now - s.started_t, 1),
            "seconds_since_dose": None if dose is None else round(now - dose, 1),
        }

    def _pause_json(self, now: float) -> dict[str, Any]:
        p = self.audio_pause
        # A pause past its end is over even before the monitor's resume event is folded in.
        if p is None or not p.paused or (p.until_t is not None and p.until_t <= now):
            return {"paused": False, "until_t": None, "reason": "" if p is None else p.reason}
        return {"paused": True, "until_t": _t(p.until_t), "reason": p.reason}

    def _baseline_json(self) -> dict[str, Any] | None:
        b = self.baseline
        if b is None:
            return None
        return {"t": _t(b.t), "sys": b.sys, "dia": b.dia, "spo2": b.spo2, "pr": b.pr}

    def _discharge_json(self) -> dict[str, Any] | None:
        d = self.discharge
        if d is None:
            return None
        return {"t": _t(d.t), "ready": d.ready, "unmet": list(d.unmet)}

    def _nibp_json(self) -> dict[str, Any]:
        req, failed = self.nibp_request, self.nibp_failed
        return {
            "last_request": None if req is None else {"t": _t(req.t), "reason": req.reason},
            "last_failure": (
                None
                if failed is None
                else {"t": _t(failed.t), "device": failed.device, "detail": failed.detail}
            ),
        }

    def _room_json(self) -> dict[str, Any] | None:
        r = self.room
        if r is None:
            return None
        return {
            "t": _t(r.t),
            "scene": r.scene,
            "light_pct": r.light_pct,
            "colour_temp_k": r.colour_temp_k,
            "playlist": r.playlist,
            "volume_pct": r.volume_pct,
            "ducked": r.ducked,
            "override": r.override,
            "pinned": r.pinned,
            "source": r.source,
        }
