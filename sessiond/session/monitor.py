"""The monitor of one room: the session timeline, the alarm engine, the BP schedule and
discharge readiness, driven by readings and time.

Pure: time comes in with each call. The daemon and `sessiond replay` drive it the same way
(`advance(t)` up to each reading's time, then `on_reading`, and `advance` at `next_due()`
when nothing arrives); only their clocks differ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sessiond.model import (
    INVALID_FOR_ALARMS,
    AlarmState,
    AlarmTransition,
    NurseAction,
    Phase,
    PhaseChanged,
    Priority,
    Reading,
    RecordGap,
    SessionStarted,
)
from sessiond.session.alarms import INF, AlarmEngine
from sessiond.session.commands import CommandRejected
from sessiond.session.discharge import DischargeCheck
from sessiond.session.schedule import NibpSchedule
from sessiond.session.timeline import Timeline

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sessiond.config import Config
    from sessiond.model import DeviceStatus, Event, Route
    from sessiond.session.state import OpenSession

#: BP alarms whose raising asks for a confirming reading at once.
_BP_ALARMS = frozenset({"bp_high", "bp_low", "bp_rise"})
#: Notes are free text for the record; this bounds what one nurse action can hold.
MAX_NOTE_CHARS = 2000
#: The device name of a BP a nurse took by hand: recorded and shown (trends, console) as a
#: reading, but not judged by the alarm rules (the nurse has the cuff in hand already).
MANUAL_DEVICE = "manual"
#: What a nurse may enter by hand besides notes (DESIGN §9).
ENTRY_KINDS = frozenset({"bp", "side_effect", "dose"})


class Monitor:
    """One room's session logic. Every method returns the events it caused, in time order."""

    def __init__(
        self,
        *,
        config: Config,
        streaming: Iterable[str],
        nibp: Iterable[str] = (),
        start: float = 0.0,
        predose_gate: bool = False,
    ) -> None:
        self.config = config
        #: The pre-dose checklist gates the dose (the daemon; replay doses as told).
        self.predose_gate = predose_gate
        self.timeline = Timeline(config=config.timeline)
        self.nibp_devices = frozenset(nibp)
        self.alarms = AlarmEngine(
            config=config.alarms,
            streaming=streaming,
            nibp=self.nibp_devices,
            start=start,
            schedule=config.nibp,
            baseline=config.baseline,
        )
        self.schedule = NibpSchedule(config.nibp) if self.nibp_devices else None
        self.discharge = DischargeCheck(
            config.discharge, hold_s=config.alarms.device_lost.medium_after_s
        )
        self.session_id: str | None = None
        #: The pre-dose checklist's unconfirmed item ids; None until it is submitted.
        self.predose_missing: tuple[str, ...] | None = None

    @property
    def phase(self) -> Phase | None:
        return self.timeline.phase

    @property
    def running(self) -> bool:
        return self.session_id is not None and self.phase is not Phase.ENDED

    def next_due(self) -> float:
        due = self.timeline.next_due()
        due = min(INF if due is None else due, self.alarms.next_due(), self.discharge.next_due())
        return due if self.schedule is None else min(due, self.schedule.next_due())

    def advance(self, now: float) -> list[Event]:
        """Everything due up to `now`, each event stamped with the time it was due."""
        out: list[Event] = []
        while (due := self.next_due()) <= now:
            if self.schedule is not None:
                # Before the phase change: a reading due at a boundary is not skipped by the
                # next phase's longer interval.
                try:
                    out += self.schedule.advance(due)
                except Exception as exc:  # noqa: BLE001  (the alarms must still advance)
                    out += self._broken("BP schedule", exc, due)
                    self.schedule = None
            out += self._phase_events(self.timeline.advance(due))
            out += self._after_alarms(self.alarms.advance(due))
            out += self._readiness(due)
        return out

    def _broken(self, part: str, exc: Exception, t: float) -> list[Event]:
        """A part that raised is out of service; `monitor_fault` says so (and the log)."""
        self.alarms.faults.append((part, exc))
        return self.alarms.report(t, "monitor_fault", active=True)

    def on_reading(self, reading: Reading) -> list[Event]:
        """Evaluate a reading; call `advance(reading.t)` first so that earlier deadlines fire."""
        t = reading.t
        out = self._after_alarms(self.alarms.on_reading(reading))
        bp = reading.device in self.nibp_devices and reading.sys is not None
        if bp and self.schedule is not None:
            self.schedule.measured(t)
        discharge = self.discharge
        if discharge.active:
            if bp:
                assert reading.sys is not None
                if reading.dia is not None:
                    discharge.bp(reading.sys, reading.dia)
            elif reading.device not in self.nibp_devices:
                if reading.flags & INVALID_FOR_ALARMS:
                    discharge.oximetry(t, None, None)
                else:
                    discharge.oximetry(t, reading.spo2, reading.pr)
            if out or discharge.due(t):
                out += self._readiness(t)
        return out

    # Nurse commands -----------------------------------------------------------------------

    def start_session(
        self, t: float, *, session_id: str, route: Route, user: str, source: str
    ) -> list[Event]:
        if self.running:
            msg = "a session is already running; end it first"
            raise CommandRejected(msg)
        self.session_id = session_id
        self.predose_missing = None
        self.alarms.start(t)
        self.discharge.reset()
        out: list[Event] = [SessionStarted(t=t, session_id=session_id, route=route, user=user)]
        out.append(
            NurseAction(
                t=t, action="session_start", user=user, source=source, detail={"route": route.value}
            )
        )
        return out + self._phase_events(self.timeline.start(t, route))

    def resume(self, now: float, *, session: OpenSession) -> list[Event]:
        """Take up a session from the record after a restart, at the point its timeline is now.

        Everything the record showed comes back: the baseline (fixed, or so far with the dose
        gate), the alarms with their level, latch and acknowledgement, an audio pause, the BP
        schedule from the last reading, and the gap in monitoring is written to the record.
        The phase changes that fell while the daemon was down are not replayed as events.
        """
        self.session_id = session.session_id
        alarms = self.alarms
        alarms.start(session.started_t)
        alarms.restart(now)
        self.timeline.start(session.started_t, session.route)
        if session.dose_t is not None:
            self.timeline.dose(session.dose_t)
            alarms.resume(session.baseline)
            self._dose_dependents(session.dose_t, now=now)
        else:
            for t, spo2, pr in session.oximetry:
                alarms.baseline.add_oximetry(t, spo2, pr)
        alarms.restore_bp(session.bp_readings)
        alarms.nibp_overdue.not_before = now
        self.timeline.advance(now)
        phase = self.timeline.phase
        assert phase is not None
        out: list[Event] = [
            SessionStarted(t=session.started_t, session_id=session.session_id,
                           route=session.route, user=session.started_by, resumed=True,
                           dose_t=session.dose_t, dose_override=session.dose_override,
                           notes=session.notes),
            NurseAction(t=now, action="session_resume", user="sessiond", source="restart"),
        ]  # fmt: skip
        if session.last_t is not None and session.last_t < now:
            out.append(RecordGap(t=now, since_t=session.last_t, reason="daemon restarted"))
        if session.baseline is not None:
            out.append(session.baseline)  # shown again, as the record holds it
        out.append(PhaseChanged(t=now, phase=phase))
        out += alarms.set_phase(now, phase)
        out += alarms.restore(now, session.alarms)
        if session.paused_until is not None:
            out += alarms.restore_pause(now, session.paused_until)
        if self.schedule is not None:
            last_bp = session.bp_readings[-1][0] if session.bp_readings else None
            out += self.schedule.resume(now, phase, last_bp_t=last_bp)
        return out

    def mark_dose(
        self, t: float, *, user: str, source: str, reason: str | None = None
    ) -> list[Event]:
        if not self.running:
            msg = "no session is running: start one first"
            raise CommandRejected(msg)
        if self.timeline.dose_t is not None:
            msg = "the dose was already marked"
            raise CommandRejected(msg)
        reason = (reason or "").strip() or None
        if self.alarms.dose_gate_closed and reason is None:
            bp = self.alarms.baseline.bp()
            shown = "" if bp is None else f" (baseline {bp[0]:.0f}/{bp[1]:.0f} mmHg)"
            msg = f"dose_gate is high{shown}: dosing needs an override with a reason"
            raise CommandRejected(msg)
        missing = self._predose_missing()
        if missing and reason is None:
            msg = (
                f"the pre-dose checklist is not complete ({', '.join(missing)}): "
                "dosing needs an override with a reason"
            )
            raise CommandRejected(msg)
        detail: dict[str, Any] = {} if reason is None else {"override_reason": reason}
        if missing:
            detail["checklist_missing"] = list(missing)
        out: list[Event] = [NurseAction(t=t, action="dose", user=user, source=source,
                                        detail=detail)]  # fmt: skip
        out += self._after_alarms(self.alarms.dose(t))
        self._dose_dependents(t, now=t)
        return out + self._phase_events(self.timeline.dose(t))

    def _predose_missing(self) -> tuple[str, ...]:
        """The pre-dose items not confirmed (all of them when the list was never submitted)."""
        if not self.predose_gate:
            return ()
        items = tuple(item.id for item in self.config.checklists.predose)
        return items if self.predose_missing is None else self.predose_missing

    def add_entry(self, t: float, *, entry: dict[str, Any], user: str, source: str) -> list[Event]:
        """A manual entry: a BP taken by hand, a side effect, a dose given (route, amount)."""
        if not self.running:
            msg = "no session is running"
            raise CommandRejected(msg)
        kind = entry.get("kind")
        if kind not in ENTRY_KINDS:
            msg = f"unknown entry kind {kind!r} (known: {', '.join(sorted(ENTRY_KINDS))})"
            raise CommandRejected(msg)
        out: list[Event] = [
            NurseAction(t=t, action="entry", user=user, source=source, detail=dict(entry))
        ]
        if kind == "bp":
            out.append(
                Reading(t=t, device=MANUAL_DEVICE, sys=entry["sys"], dia=entry["dia"],
                        map=entry.get("map"), pr=entry.get("pr"))
            )  # fmt: skip
        return out

    def checklist(
        self,
        t: float,
        *,
        kind: str,
        checked: list[str],
        reason: str | None,
        user: str,
        source: str,
    ) -> list[Event]:
        """A checklist confirmed by a nurse: `predose` (gates the dose) or `discharge` (the
        nurse's sign-off, with the daemon's readiness at that moment beside it)."""
        if not self.running:
            msg = "no session is running"
            raise CommandRejected(msg)
        config = self.config.checklists
        items = [i.id for i in (config.predose if kind == "predose" else config.discharge)]
        unknown = sorted(set(checked) - set(items))
        if kind not in ("predose", "discharge") or unknown:
            msg = f"not on the {kind} checklist: {', '.join(unknown) or kind}"
            raise CommandRejected(msg)
        missing = [i for i in items if i not in checked]
        reason = (reason or "").strip() or None
        detail: dict[str, Any] = {"kind": kind, "checked": [i for i in items if i in checked],
                                  "missing": missing}  # fmt: skip
        if kind == "predose":
            if self.timeline.dose_t is not None:
                msg = "the dose is marked already: the pre-dose checklist is closed"
                raise CommandRejected(msg)
            self.predose_missing = tuple(missing)
        else:
            if self.timeline.dose_t is None:
                msg = "discharge sign-off comes after the dose"
                raise CommandRejected(msg)
            if missing and reason is None:
                msg = f"the discharge checklist is not complete ({', '.join(missing)})"
                raise CommandRejected(msg)
            detail["ready"] = self.discharge.ready
            detail["unmet"] = list(self.discharge.unmet)
        if reason is not None:
            detail["override_reason"] = reason
        return [NurseAction(t=t, action="checklist", user=user, source=source, detail=detail)]

    def _dose_dependents(self, dose_t: float, *, now: float) -> None:
        route = self.timeline.route
        assert route is not None
        minimum = self.config.timeline.for_route(route).discharge_after_min * 60.0
        self.discharge.dose(dose_t, minimum_s=minimum)
        if self.schedule is not None:
            self.schedule.dose(dose_t, now=now)

    def end_session(self, t: float, *, user: str, source: str) -> list[Event]:
        if not self.running:
            msg = "no session is running"
            raise CommandRejected(msg)
        out: list[Event] = [NurseAction(t=t, action="session_end", user=user, source=source)]
        out += self._phase_events(self.timeline.end(t))
        out += self.alarms.end_session(t)
        self.discharge.reset()
        return out

    def acknowledge(self, t: float, *, alarm_id: str, user: str, source: str) -> list[Event]:
        shown = self.alarms.showing(alarm_id)
        if shown is None:
            msg = f"{alarm_id} is not active"
            raise CommandRejected(msg)
        out: list[Event] = [NurseAction(t=t, action="ack", user=user, source=source,
                                        detail={"alarm_id": alarm_id,
                                                "priority": shown[0].label})]  # fmt: skip
        return out + self._after_alarms(self.alarms.acknowledge(t, alarm_id))

    def pause_audio(self, t: float, *, user: str, source: str) -> list[Event]:
        pause_s = self.config.alarms.audio.pause_s
        out: list[Event] = [NurseAction(t=t, action="pause", user=user, source=source,
                                        detail={"seconds": pause_s})]  # fmt: skip
        return out + self.alarms.pause(t)

    def add_note(self, t: float, *, text: str, user: str, source: str) -> list[Event]:
        text = text.strip()
        if not self.running:
            msg = "no session is running"
            raise CommandRejected(msg)
        if not text:
            msg = "the note is empty"
            raise CommandRejected(msg)
        if len(text) > MAX_NOTE_CHARS:
            msg = f"the note is longer than {MAX_NOTE_CHARS} characters"
            raise CommandRejected(msg)
        return [NurseAction(t=t, action="note", user=user, source=source, detail={"text": text})]

    def measure_nibp(self, t: float, *, user: str, source: str) -> list[Event]:
        if self.schedule is None:
            msg = "no BP monitor is configured"
            raise CommandRejected(msg)
        return [
            NurseAction(t=t, action="nibp_measure", user=user, source=source),
            self.schedule.request(t, "nurse"),
        ]

    def device_status(self, status: DeviceStatus) -> list[Event]:
        """A device link went up or down (the BP module's raises and clears `device_lost`)."""
        return self.alarms.device_status(status.t, status.device, connected=status.connected)

    def nibp_failed(self, t: float) -> list[Event]:
        """The BP link reports a measurement that failed without a result frame."""
        return self._after_alarms(self.alarms.nibp_failed(t))

    def report(self, t: float, alarm_id: str, *, active: bool) -> list[Event]:
        """A technical condition of the daemon itself (`monitor_fault`, `record_fault`)."""
        return self.alarms.report(t, alarm_id, active=active)

    # Internals -----------------------------------------------------------------------------

    def _phase_events(self, changes: list[PhaseChanged]) -> list[Event]:
        out: list[Event] = []
        for change in changes:
            out.append(change)
            out += self._after_alarms(self.alarms.set_phase(change.t, change.phase))
            if self.schedule is not None:
                out += self.schedule.set_phase(change.t, change.phase)
        return out

    def _after_alarms(self, events: list[Event]) -> list[Event]:
        """A medium or high BP alarm raised: ask for a confirming reading at once."""
        schedule = self.schedule
        if schedule is None or not schedule.config.remeasure_on_alarm or not self.running:
            return events
        for event in events:
            if (
                isinstance(event, AlarmTransition)
                and event.alarm_id in _BP_ALARMS
                and event.state is AlarmState.ACTIVE
                and event.priority >= Priority.MEDIUM
            ):
                return [*events, schedule.request(event.t, f"{event.alarm_id} alarm")]
        return events

    def _readiness(self, t: float) -> list[Event]:
        if not self.running:
            self.discharge.reset()
            return []
        if self.discharge.broken:
            return []
        try:
            event = self.discharge.evaluate(
                t, alarms_shown=self.alarms.any_shown(), baseline=self.alarms.baseline.captured
            )
        except Exception as exc:  # noqa: BLE001  (readiness is advice; alarms go on)
            self.discharge.broken = True
            return self._broken("discharge readiness", exc, t)
        return [] if event is None else [event]
