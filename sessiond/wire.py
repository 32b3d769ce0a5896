"""The JSON form of events: replay output (DESIGN §6), the console's WebSocket, MQTT `event`.

One function per direction so that every consumer speaks the same keys. The replay contract
fixes the keys of `phase`, `alarm` and `reading`; other consumers ignore what they do not know.
"""

from __future__ import annotations

from typing import Any

from sessiond.model import (
    INFUSION_ADVICE,
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
    PhaseChanged,
    Reading,
    RecordGap,
    RoomChanged,
    SessionStarted,
    Waveform,
)

_VALUE_KEYS = ("spo2", "pr", "pi", "sys", "dia", "map")

#: Nurse-action detail keys that may leave the record (no free text: it may name the patient).
_PUBLIC_DETAIL_KEYS = frozenset(
    {"route", "alarm_id", "priority", "seconds", "scene", "volume_pct", "pinned", "session_id"}
    # An infusion's numbers; its pause, resume and stop reasons are free text.
    | {
        "infusion",
        "planned_amount",
        "unit",
        "planned_min",
        "given_amount",
        "infused_min",
        "paused_min",
        "elapsed_min",
        "pauses",
    }
    # Manual entries and checklists: values and item ids, never their free text.
    | {"kind", "sys", "dia", "map", "pr", "effect", "severity", "amount_mg", "drug", "ready"}
)
#: Detail keys whose value is a list of item ids (checklists).
_PUBLIC_LIST_KEYS = frozenset({"checked", "missing", "unmet", "checklist_missing"})


def _t(t: float) -> float:
    return round(t, 3)


def reading_json(r: Reading) -> dict[str, Any]:
    """A reading with the values it has; a missing value is absent, never a number."""
    out: dict[str, Any] = {"t": _t(r.t), "type": "reading", "device": r.device}
    for key in _VALUE_KEYS:
        value = getattr(r, key)
        if value is not None:
            out[key] = value
    out["flags"] = r.flags.names()
    return out


def alarm_json(a: AlarmTransition) -> dict[str, Any]:
    out: dict[str, Any] = {
        "t": _t(a.t),
        "type": "alarm",
        "id": a.alarm_id,
        "priority": a.priority.label,
        "state": a.state.value,
    }
    if a.value is not None:
        out["value"] = float(a.value)
    if a.limit is not None:
        out["limit"] = float(a.limit)
    if a.device is not None:
        out["device"] = a.device
    return out


def public_action_json(action: NurseAction) -> dict[str, Any]:
    """A nurse action for eyes outside the record (MQTT, the unsigned page).

    Only known detail keys with plain values go out: note texts and dose-override reasons
    stay in the record, and an override shows only as `"override": true`.
    """
    out: dict[str, Any] = {
        "t": _t(action.t),
        "type": "action",
        "action": action.action,
        "user": action.user,
        "source": action.source,
    }
    out.update(
        (key, value)
        for key, value in action.detail.items()
        if key in _PUBLIC_DETAIL_KEYS and isinstance(value, str | int | float | bool | None)
    )
    out.update(
        (key, [str(v) for v in value])
        for key, value in action.detail.items()
        if key in _PUBLIC_LIST_KEYS and isinstance(value, list | tuple)
    )
    if "override_reason" in action.detail:
        out["override"] = True
    return out


def prompt_json(prompt: InfusionPrompt) -> dict[str, Any]:
    """The infusion prompt: the advice, and the BP readings that confirmed the alarm."""
    out: dict[str, Any] = {
        "t": _t(prompt.t),
        "type": "infusion_prompt",
        "active": prompt.active,
        "advice": INFUSION_ADVICE,
        "readings": [{"t": _t(t), "sys": sys, "dia": dia} for t, sys, dia in prompt.readings],
    }
    if prompt.reason:
        out["reason"] = prompt.reason
    return out


def _minutes(seconds: float) -> float:
    return round(seconds / 60.0, 1)


def infusion_json(infusion: Infusion, now: float) -> dict[str, Any]:
    """An infusion as shown at `now`: plan, running time, pauses and amount given (no reasons)."""
    return {
        "started_t": _t(infusion.started_t),
        "planned_amount": infusion.planned_amount,
        "unit": None if infusion.unit is None else infusion.unit.value,
        "planned_min": infusion.planned_min,
        "state": "stopped" if infusion.stopped else "paused" if infusion.paused else "running",
        "infused_min": _minutes(infusion.infused_s(now)),
        "paused_min": _minutes(infusion.paused_s(now)),
        "elapsed_min": _minutes(infusion.elapsed_s(now)),
        "pauses": [
            {"t": _t(start), "until_t": None if end is None else _t(end)}
            for start, end in infusion.pauses
        ],
        "stopped_t": None if infusion.stopped_t is None else _t(infusion.stopped_t),
        "given_amount": infusion.given_amount,
        "given_unit": None if infusion.given_unit is None else infusion.given_unit.value,
    }


def event_json(event: Event) -> dict[str, Any]:  # noqa: C901, PLR0911, PLR0912  (one case per type)
    """Any bus event as a JSON-ready dict with `t` and `type`."""
    match event:
        case Reading():
            return reading_json(event)
        case AlarmTransition():
            out = alarm_json(event)
            if event.phase is not None:
                out["phase"] = event.phase.value
            if event.restored:
                out["restored"] = True
                out["acknowledged"] = event.acknowledged
            return out
        case PhaseChanged():
            return {"t": _t(event.t), "type": "phase", "phase": event.phase.value}
        case SessionStarted():
            return {
                "t": _t(event.t),
                "type": "session",
                "session_id": event.session_id,
                "route": event.route.value,
                "user": event.user,
                "resumed": event.resumed,
                "dose_t": None if event.dose_t is None else _t(event.dose_t),
                # A resumed session's infusion, as the record left it.
                "infusion": None
                if event.infusion is None
                else infusion_json(event.infusion, event.infusion.stopped_t or event.t),
            }
        case NurseAction():
            return {
                "t": _t(event.t),
                "type": "action",
                "action": event.action,
                "user": event.user,
                "source": event.source,
                **event.detail,
            }
        case DeviceStatus():
            return {
                "t": _t(event.t),
                "type": "device",
                "device": event.device,
                "connected": event.connected,
                "detail": event.detail,
            }
        case NibpRequest():
            return {"t": _t(event.t), "type": "nibp_request", "reason": event.reason}
        case NibpFailed():
            return {
                "t": _t(event.t),
                "type": "nibp_failed",
                "device": event.device,
                "detail": event.detail,
            }
        case DischargeReadiness():
            return {
                "t": _t(event.t),
                "type": "discharge_ready",
                "ready": event.ready,
                "unmet": list(event.unmet),
            }
        case AudioPause():
            return {
                "t": _t(event.t),
                "type": "audio_pause",
                "paused": event.paused,
                "until_t": None if event.until_t is None else _t(event.until_t),
                "reason": event.reason,
            }
        case BaselineCaptured():
            return {
                "t": _t(event.t),
                "type": "baseline",
                "sys": event.sys,
                "dia": event.dia,
                "spo2": event.spo2,
                "pr": event.pr,
            }
        case RecordGap():
            return {
                "t": _t(event.t),
                "type": "gap",
                "since_t": _t(event.since_t),
                "reason": event.reason,
            }
        case InfusionPrompt():
            return prompt_json(event)
        case Waveform():
            return {"t": _t(event.t), "type": "pleth", "device": event.device,
                    "samples": list(event.pleth)}  # fmt: skip
        case RoomChanged():
            return {
                "t": _t(event.t),
                "type": "room",
                "scene": event.scene,
                "light_pct": event.light_pct,
                "colour_temp_k": event.colour_temp_k,
                "playlist": event.playlist,
                "volume_pct": event.volume_pct,
                "ducked": event.ducked,
                "override": event.override,
                "pinned": event.pinned,
                "source": event.source,
            }
