"""A stand-in for the daemon's session control, for the console's own tests.

The end-to-end test drives the real daemon; these tests pin the console alone.
"""

from __future__ import annotations

from typing import Any

from sessiond.bus import Bus
from sessiond.config import ConsoleUser
from sessiond.console.auth import hash_password
from sessiond.model import (
    AlarmState,
    AlarmTransition,
    AudioPause,
    BaselineCaptured,
    DoseUnit,
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
from sessiond.session.commands import CommandRejected

PASSWORD = "correct horse battery"  # noqa: S105 - the test user's password
# Few iterations: the tests check the scheme, not its cost.
USERS = {"nurse1": ConsoleUser(password_hash=hash_password(PASSWORD, iterations=1_000))}
#: Alarm audio pause, as the default `[alarms.audio] pause_s`.
PAUSE_S = 120.0
#: name -> light %, colour temperature K, playlist, volume % (the shipped defaults).
SCENES = {
    "idle": (60.0, 3000, "", 0),
    "baseline": (45.0, 2700, "baseline", 35),
    "onset": (25.0, 2400, "onset", 30),
    "effect": (15.0, 2200, "effect", 25),
    "recovery": (40.0, 2700, "recovery", 30),
}


#: The default checklists' item ids (`ChecklistsConfig`).
PREDOSE = ("fasting_solids", "fasting_liquids", "escort", "consent", "medications", "baseline_bp")
DISCHARGE = ("escort_present", "alert", "instructions")


class StubControl:
    """Records commands and publishes the events the real session control would."""

    def __init__(self, *, bus: Bus, t: float = 1000.0) -> None:
        self.bus = bus
        self.t = t
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.session_id: str | None = None
        self.dose_t: float | None = None
        self.reject: str | None = None
        #: A high `dose_gate` is shown: the dose needs a reason (as the monitor's gate).
        self.gate_closed = False
        #: The baseline the dose fixes (SYS, DIA, SpO2, PR).
        self.baseline = (128.0, 82.0, 97.0, 72.0)
        #: What the BP module answers a measure-now with (SYS, DIA, MAP, PR); None: nothing yet.
        self.bp_result: tuple[int, int, int, int] | None = None
        self.phase = Phase.BASELINE
        #: The pre-dose checklist gates the dose (as the daemon's does) when set.
        self.checklist_gate = False
        self.predose_missing: list[str] = list(PREDOSE)
        self.scene: str | None = None
        self.volume: int | None = None
        self.pinned = False
        #: None, "running", "paused" or "stopped".
        self.infusion: str | None = None

    def now(self) -> float:
        return self.t

    async def start_session(self, *, route: Route, user: str, source: str) -> str:
        if self.reject is not None:
            raise CommandRejected(self.reject)
        if self.session_id is not None:
            raise CommandRejected("a session is already running")
        self.calls.append(("start", {"route": route, "user": user, "source": source}))
        self.session_id = f"sess-{len(self.calls)}"
        self.phase = Phase.BASELINE
        self.bus.publish(
            SessionStarted(t=self.t, session_id=self.session_id, route=route, user=user)
        )
        self.bus.publish(PhaseChanged(t=self.t, phase=Phase.BASELINE))
        self.bus.publish(NibpRequest(t=self.t, reason="session start"))
        return self.session_id

    async def mark_dose(self, *, user: str, source: str, reason: str | None = None) -> None:
        if self.reject is not None:
            raise CommandRejected(self.reject)
        if self.session_id is None:
            raise CommandRejected("no session is running")
        if self.dose_t is not None:
            raise CommandRejected("the dose is already marked")
        if self.gate_closed and not reason:
            raise CommandRejected("dose_gate is high: dosing needs an override with a reason")
        if self.checklist_gate and self.predose_missing and not reason:
            raise CommandRejected(
                "the pre-dose checklist is not complete: dosing needs an override with a reason"
            )
        self.calls.append(("dose", {"reason": reason, "user": user, "source": source}))
        self.dose_t = self.t
        detail = {} if reason is None else {"override_reason": reason}
        self.bus.publish(
            NurseAction(t=self.t, action="dose", user=user, source=source, detail=detail)
        )
        sys, dia, spo2, pr = self.baseline
        self.bus.publish(BaselineCaptured(t=self.t, sys=sys, dia=dia, spo2=spo2, pr=pr))
        if self.gate_closed:
            self.gate_closed = False
            self.bus.publish(
                AlarmTransition(t=self.t, alarm_id="dose_gate", priority=Priority.HIGH,
                                state=AlarmState.CLEARED, phase=Phase.BASELINE)
            )  # fmt: skip
        self.phase = Phase.ONSET
        self.bus.publish(PhaseChanged(t=self.t, phase=Phase.ONSET))

    async def start_infusion(
        self,
        *,
        amount: float,
        unit: DoseUnit,
        planned_min: float,
        user: str,
        source: str,
        reason: str | None = None,
    ) -> None:
        """The dose, with the plan recorded as `infusion_start` (as the monitor does)."""
        if self.infusion is not None:
            raise CommandRejected("an infusion was already started in this session")
        await self.mark_dose(user=user, source=source, reason=reason)
        self.calls[-1] = ("infusion_start", {**self.calls[-1][1], "amount": amount,
                                             "unit": unit, "planned_min": planned_min})  # fmt: skip
        self.infusion = "running"
        plan = {"planned_amount": amount, "unit": unit.value, "planned_min": planned_min}
        self.bus.publish(NurseAction(t=self.t, action="infusion_start", user=user, source=source,
                                     detail=plan))  # fmt: skip

    async def pause_infusion(self, *, reason: str, user: str, source: str) -> None:
        if self.infusion != "running":
            raise CommandRejected("no infusion is running: nothing to pause")
        self._infusion_action("infusion_pause", user, source, reason=reason)
        self.infusion = "paused"

    async def resume_infusion(self, *, reason: str, user: str, source: str) -> None:
        if self.infusion != "paused":
            raise CommandRejected("the infusion is not paused")
        self._infusion_action("infusion_resume", user, source, reason=reason)
        self.infusion = "running"

    async def stop_infusion(
        self,
        *,
        amount: float,
        unit: DoseUnit | None,
        user: str,
        source: str,
        reason: str | None = None,
    ) -> None:
        if self.infusion not in {"running", "paused"}:
            raise CommandRejected("no infusion was started: nothing to stop")
        self._infusion_action("infusion_stop", user, source, given_amount=amount,
                              unit=None if unit is None else unit.value, reason=reason)  # fmt: skip
        self.infusion = "stopped"

    def _infusion_action(self, action: str, user: str, source: str, **detail: Any) -> None:
        self.calls.append((action, {**detail, "user": user, "source": source}))
        self.bus.publish(
            NurseAction(t=self.t, action=action, user=user, source=source, detail=detail)
        )

    async def end_session(self, *, user: str, source: str) -> None:
        if self.session_id is None:
            raise CommandRejected("no session is running")
        self.calls.append(("end", {"user": user, "source": source}))
        self.bus.publish(NurseAction(t=self.t, action="session_end", user=user, source=source))
        self.phase = Phase.ENDED
        self.bus.publish(PhaseChanged(t=self.t, phase=Phase.ENDED))

    async def acknowledge(self, *, alarm_id: str, user: str, source: str) -> None:
        if self.reject is not None:
            raise CommandRejected(self.reject)
        self.calls.append(("ack", {"alarm_id": alarm_id, "user": user, "source": source}))
        self.bus.publish(
            NurseAction(t=self.t, action="ack", user=user, source=source,
                        detail={"alarm_id": alarm_id})
        )  # fmt: skip

    async def pause_audio(self, *, user: str, source: str) -> None:
        if self.reject is not None:
            raise CommandRejected(self.reject)
        self.calls.append(("pause", {"user": user, "source": source}))
        self.bus.publish(
            NurseAction(t=self.t, action="pause", user=user, source=source,
                        detail={"seconds": PAUSE_S})
        )  # fmt: skip
        self.bus.publish(
            AudioPause(t=self.t, paused=True, until_t=self.t + PAUSE_S, reason="nurse")
        )

    async def add_note(self, *, text: str, user: str, source: str) -> None:
        if self.reject is not None:
            raise CommandRejected(self.reject)
        if self.session_id is None:
            raise CommandRejected("no session is running")
        self.calls.append(("note", {"text": text, "user": user, "source": source}))
        self.bus.publish(
            NurseAction(t=self.t, action="note", user=user, source=source, detail={"text": text})
        )

    async def add_entry(self, *, entry: dict[str, Any], user: str, source: str) -> None:
        if self.reject is not None:
            raise CommandRejected(self.reject)
        if self.session_id is None:
            raise CommandRejected("no session is running")
        self.calls.append(("entry", {"entry": entry, "user": user, "source": source}))
        self.bus.publish(
            NurseAction(t=self.t, action="entry", user=user, source=source, detail=dict(entry))
        )
        if entry["kind"] == "bp":
            self.bus.publish(Reading(t=self.t, device="manual", sys=entry["sys"],
                                     dia=entry["dia"], pr=entry.get("pr")))  # fmt: skip

    async def checklist(
        self, *, kind: str, checked: list[str], reason: str | None, user: str, source: str
    ) -> None:
        if self.reject is not None:
            raise CommandRejected(self.reject)
        if self.session_id is None:
            raise CommandRejected("no session is running")
        items = PREDOSE if kind == "predose" else DISCHARGE
        missing = [i for i in items if i not in checked]
        if kind == "discharge" and missing and reason is None:
            msg = f"the discharge checklist is not complete ({', '.join(missing)})"
            raise CommandRejected(msg)
        self.calls.append(("checklist", {"kind": kind, "checked": checked, "reason": reason,
                                         "user": user, "source": source}))  # fmt: skip
        if kind == "predose":
            self.predose_missing = missing
        detail: dict[str, Any] = {"kind": kind, "checked": checked, "missing": missing}
        if reason is not None:
            detail["override_reason"] = reason
        self.bus.publish(
            NurseAction(t=self.t, action="checklist", user=user, source=source, detail=detail)
        )

    async def measure_nibp(self, *, user: str, source: str) -> None:
        if self.reject is not None:
            raise CommandRejected(self.reject)
        self.calls.append(("nibp", {"user": user, "source": source}))
        self.bus.publish(NurseAction(t=self.t, action="nibp_measure", user=user, source=source))
        self.bus.publish(NibpRequest(t=self.t, reason="nurse"))
        if self.bp_result is not None:
            sys, dia, map_, pr = self.bp_result
            self.bus.publish(Reading(t=self.t, device="nibp", sys=sys, dia=dia, map=map_, pr=pr))

    async def set_scene(self, *, scene: str | None, pinned: bool, user: str, source: str) -> None:
        if self.reject is not None:
            raise CommandRejected(self.reject)
        if scene is not None and scene not in SCENES:
            msg = f"no scene {scene!r}"
            raise CommandRejected(msg)
        self.calls.append(
            ("scene", {"scene": scene, "pinned": pinned, "user": user, "source": source})
        )
        self.scene, self.pinned = scene, pinned
        self.bus.publish(
            NurseAction(t=self.t, action="scene", user=user, source=source,
                        detail={"scene": scene, "pinned": pinned})
        )  # fmt: skip
        self.bus.publish(self.room(source))

    async def set_volume(self, *, volume_pct: int, pinned: bool, user: str, source: str) -> None:
        if self.reject is not None:
            raise CommandRejected(self.reject)
        if not 0 <= volume_pct <= 100:
            raise CommandRejected("volume must be 0-100 %")
        self.calls.append(
            ("volume", {"volume_pct": volume_pct, "pinned": pinned, "user": user, "source": source})
        )
        self.volume, self.pinned = volume_pct, pinned
        self.bus.publish(
            NurseAction(t=self.t, action="volume", user=user, source=source,
                        detail={"volume_pct": volume_pct, "pinned": pinned})
        )  # fmt: skip
        self.bus.publish(self.room(source))

    def room(self, source: str = "phase") -> RoomChanged:
        """The room as the scene controller would set it now."""
        following = self.session_id is not None and self.phase is not Phase.ENDED
        name = self.scene or (self.phase.value if following else "idle")
        light, kelvin, playlist, volume = SCENES[name]
        manual = self.scene is not None or self.volume is not None
        return RoomChanged(
            t=self.t, scene=name, light_pct=light, colour_temp_k=kelvin, playlist=playlist,
            volume_pct=volume if self.volume is None else self.volume,
            override="manual" if manual else None, pinned=self.pinned, source=source,
        )  # fmt: skip
