"""RoomStatus: what the console and MQTT show, folded from bus events."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sessiond.model import (
    AlarmState,
    AlarmTransition,
    AudioPause,
    BaselineCaptured,
    DischargeReadiness,
    NibpFailed,
    NibpRequest,
    NurseAction,
    Phase,
    PhaseChanged,
    Priority,
    Reading,
    RoomChanged,
    Route,
    SessionStarted,
)
from sessiond.status import RoomStatus

if TYPE_CHECKING:
    from sessiond.model import Event


def folded(*events: Event) -> RoomStatus:
    status = RoomStatus("room-7")
    for event in events:
        status.apply(event)
    return status


def started(t: float = 0.0, session_id: str = "s1") -> SessionStarted:
    return SessionStarted(t=t, session_id=session_id, route=Route.IV, user="nurse1")


def snap(status: RoomStatus, now: float = 100.0) -> dict[str, Any]:
    out = status.snapshot(now)
    assert json.loads(json.dumps(out)) == out  # JSON-ready as it is
    return out


def test_empty_status() -> None:
    """Before any event: no session and nothing of the new folds, in JSON-ready form."""
    out = snap(RoomStatus("room-7"))
    assert out["session"] is None
    assert out["audio_pause"] == {"paused": False, "until_t": None, "reason": ""}
    assert out["baseline"] is None
    assert out["discharge"] is None
    assert out["nibp"] == {"last_request": None, "last_failure": None}
    assert out["room_setting"] is None
    assert out["notes"] == {"count": 0, "last_t": None}


def test_audio_pause_until_its_end_or_resume() -> None:
    """Paused until `until_t`; over at that time, or when the monitor says it resumed."""
    status = folded(AudioPause(t=10.0, paused=True, until_t=130.0, reason="nurse"))
    assert snap(status, 129.9)["audio_pause"] == {
        "paused": True,
        "until_t": 130.0,
        "reason": "nurse",
    }
    assert snap(status, 130.0)["audio_pause"]["paused"] is False
    status.apply(AudioPause(t=50.0, paused=False, reason="high alarm spo2_low"))
    assert snap(status, 60.0)["audio_pause"] == {
        "paused": False,
        "until_t": None,
        "reason": "high alarm spo2_low",
    }


def test_baseline_and_dose_override() -> None:
    """The baseline fixed at the dose shows; an override is flagged without its reason."""
    status = folded(
        started(),
        NurseAction(t=600.0, action="dose", user="n", source="console",
                    detail={"override_reason": "Dr Who agreed for Jane Doe"}),
        BaselineCaptured(t=600.0, sys=141.5, dia=88.0, spo2=97.0, pr=None),
    )  # fmt: skip
    out = snap(status, 700.0)
    assert out["baseline"] == {"t": 600.0, "sys": 141.5, "dia": 88.0, "spo2": 97.0, "pr": None}
    assert out["session"]["dose_t"] == 600.0
    assert out["session"]["dose_override"] is True
    assert "Jane" not in json.dumps(out)


def test_discharge_readiness() -> None:
    """Readiness shows ready or the unmet criteria, as the monitor last said."""
    status = folded(
        started(), DischargeReadiness(t=9000.0, ready=False, unmet=("spo2", "alarm shown"))
    )
    assert snap(status)["discharge"] == {
        "t": 9000.0,
        "ready": False,
        "unmet": ["spo2", "alarm shown"],
    }
    status.apply(DischargeReadiness(t=9100.0, ready=True))
    assert snap(status)["discharge"] == {"t": 9100.0, "ready": True, "unmet": []}


def test_bp_schedule() -> None:
    """The last request with its reason, the last reading and the last failure."""
    status = folded(
        started(),
        NibpRequest(t=0.0, reason="session start"),
        Reading(t=40.0, device="nibp", sys=132, dia=84, map=100, pr=70),
        NibpRequest(t=300.0, reason="schedule"),
        NibpFailed(t=420.0, device="nibp", detail="E03: cuff leak"),
    )
    out = snap(status, 430.0)
    assert out["nibp"] == {
        "last_request": {"t": 300.0, "reason": "schedule"},
        "last_failure": {"t": 420.0, "device": "nibp", "detail": "E03: cuff leak"},
    }
    assert out["readings"]["nibp"]["sys"] == 132


def test_room_setting() -> None:
    """The last room change: scene, lights, music and overrides."""
    status = folded(
        RoomChanged(t=5.0, scene="onset", light_pct=100.0, colour_temp_k=4000, playlist="onset",
                    volume_pct=30, ducked=True, override="alarm", pinned=False,
                    source="alarm spo2_low"),
    )  # fmt: skip
    assert snap(status)["room_setting"] == {
        "t": 5.0,
        "scene": "onset",
        "light_pct": 100.0,
        "colour_temp_k": 4000,
        "playlist": "onset",
        "volume_pct": 30,
        "ducked": True,
        "override": "alarm",
        "pinned": False,
        "source": "alarm spo2_low",
    }


def test_notes_are_counted_never_held() -> None:
    """Notes count, with the last one's time; no note text is ever in the snapshot."""
    texts = ["Jane Doe feels sick", "Called Mr Smith (husband) on 0123 456"]
    status = folded(started())
    for i, text in enumerate(texts):
        status.apply(
            NurseAction(t=10.0 + i, action="note", user="n", source="console",
                        detail={"text": text})
        )  # fmt: skip
    out = snap(status)
    assert out["notes"] == {"count": 2, "last_t": 11.0}
    dumped, held = json.dumps(out), repr(vars(status))
    for word in ("Jane", "Smith", "0123", "sick"):
        assert word not in dumped
        assert word not in held


def test_new_session_forgets_the_last_patient() -> None:
    """A new session clears baseline, readiness, BP requests and failures, notes and readings.

    The room setting and an audio pause belong to the room, not the patient, and stay.
    """
    status = folded(
        started(),
        Reading(t=1.0, device="spo2", spo2=97, pr=70),
        NibpRequest(t=2.0, reason="session start"),
        NibpFailed(t=3.0, device="nibp", detail="timeout"),
        BaselineCaptured(t=4.0, sys=130.0, dia=80.0, spo2=97.0, pr=70.0),
        DischargeReadiness(t=5.0, ready=True),
        NurseAction(t=6.0, action="note", user="n", source="console", detail={"text": "x"}),
        AudioPause(t=7.0, paused=True, until_t=127.0, reason="nurse"),
        RoomChanged(t=8.0, scene="recovery", light_pct=40.0, colour_temp_k=2700,
                    playlist="recovery", volume_pct=30),
        PhaseChanged(t=9.0, phase=Phase.ENDED),
        started(t=10.0, session_id="s2"),
    )  # fmt: skip
    out = snap(status, 20.0)
    assert out["session"]["id"] == "s2"
    assert out["readings"] == {}
    assert out["baseline"] is None
    assert out["discharge"] is None
    assert out["nibp"] == {"last_request": None, "last_failure": None}
    assert out["notes"] == {"count": 0, "last_t": None}
    assert out["audio_pause"]["paused"] is True
    assert out["room_setting"]["scene"] == "recovery"


def test_acknowledgement_holds_for_one_occurrence_at_its_priority() -> None:
    """Acknowledged until the alarm escalates or clears (unchanged by the new folds)."""

    def alarm(priority: Priority, state: AlarmState = AlarmState.ACTIVE) -> AlarmTransition:
        return AlarmTransition(t=1.0, alarm_id="spo2_low", priority=priority, state=state)

    ack = NurseAction(t=2.0, action="ack", user="n", source="console",
                      detail={"alarm_id": "spo2_low"})  # fmt: skip
    status = folded(alarm(Priority.MEDIUM), ack)
    assert snap(status)["alarms"][0]["acknowledged"] is True
    status.apply(alarm(Priority.MEDIUM, AlarmState.LATCHED))
    assert snap(status)["alarms"][0]["acknowledged"] is True
    status.apply(alarm(Priority.HIGH))
    assert snap(status)["alarms"][0]["acknowledged"] is False
    status.apply(ack)
    status.apply(alarm(Priority.HIGH, AlarmState.CLEARED))
    assert snap(status)["alarms"] == []
    assert status.acknowledged == set()
