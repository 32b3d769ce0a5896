"""The monitor of one room: the session timeline, the alarm engine, the BP schedule and
discharge readiness, driven by readings and time.

Pure: time comes in with each call. The daemon and `sessiond replay` drive it the same way
(`advance(t)` up to each reading's time, then `on_reading`, and `advance` at `next_due()`
when nothing arrives); only their clocks differ.

Repeats. An oximeter restates the same values many times a second (a Contec's 60 packets, a
Nonin's 3 packets in each second of values). A frame that repeats the device's last reading
(`on_frames`, or a reading with the same values and flags) changes nothing in the rules but
the time they last heard from the device, and only what the last repeat says about that time
can matter (a silence, how long a value stands). So a repeat is noted, not evaluated, and the
last one noted is evaluated when it could matter: before a deadline after it fires, before the
device's next reading when that reading would not restart every such time itself, before
another device's reading and before a nurse's command. A repeat that would do more is
evaluated at once: one that comes `hold_s` or more after the last evaluated reading (a device
lost and back), the first after a command, and one due for the baseline's or readiness's
once-a-second sampling (`repeat_due`). The alarms, the baseline and readiness are therefore
the same as if every repeat were evaluated, at the cost of about one evaluation a second.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sessiond.model import (
    INVALID_FOR_ALARMS,
    AlarmState,
    AlarmTransition,
    Infusion,
    InfusionPrompt,
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
from sessiond.session.infusion import check_amount, check_planned, check_reason
from sessiond.session.schedule import NibpSchedule
from sessiond.session.timeline import Timeline

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sessiond.model import DeviceStatus, DoseUnit, Event, ReadingColumns, Route
    from sessiond.session.settings import SessionConfig
    from sessiond.session.state import OpenSession

#: BP alarms whose raising asks for a confirming reading at once.
_BP_ALARMS = frozenset({"bp_high", "bp_low", "bp_rise"})
#: Notes are free text for the record; this bounds what one nurse action can hold.
MAX_NOTE_CHARS = 2000
#: Valid BP readings kept for the infusion prompt (it shows those that confirmed bp_high).
_RECENT_BP = 5


#: `INVALID_FOR_ALARMS` as a plain int: IntFlag's `&` is slow on the repeat path.
_INVALID = int(INVALID_FOR_ALARMS)


def _minutes(seconds: float) -> float:
    return round(seconds / 60.0, 1)


def _same_values(a: Reading, b: Reading) -> bool:
    """The same values and flags for the rules: `a` repeats `b` (no rule reads the PI or the
    pleth, so a reading that changes only those changes nothing here)."""
    return (
        a.spo2 == b.spo2
        and a.pr == b.pr
        and a.flags == b.flags
        and a.sys == b.sys
        and a.dia == b.dia
        and a.map == b.map
    )


def _restarts(reading: Reading, last: Reading, hold_until: float) -> bool:
    """Whether evaluating `reading` restarts everything a repeat of `last` would refresh:
    it is valid, comes within the hold, and has every value `last` had."""
    return (
        reading.t <= hold_until
        and not int(reading.flags) & _INVALID  # a plain int: IntFlag's & is slow
        and (last.spo2 is None or reading.spo2 is not None)
        and (last.pr is None or reading.pr is not None)
    )


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
        config: SessionConfig,
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
        #: The session's infusion, if its dose is the start of one (DESIGN §4).
        self.infusion: Infusion | None = None
        #: The infusion prompt is shown (a confirmed critical BP while the infusion runs).
        self.prompting = False
        self._bp_recent: deque[tuple[float, float, float]] = deque(maxlen=_RECENT_BP)
        #: The pre-dose checklist's unconfirmed item ids; None until it is submitted.
        self.predose_missing: tuple[str, ...] | None = None
        # Repeats (see the module docstring), per streaming device: its last reading, when a
        # reading of it was last evaluated, the last repeat noted and not evaluated, and the
        # devices whose next frame is evaluated whatever it says (after a command).
        self._streaming = frozenset(streaming)
        self._last: dict[str, Reading] = {}
        self._evaluated: dict[str, float] = {}
        self._repeat: dict[str, float] = {}
        self._eager: set[str] = set()
        #: A repeat this long after the last evaluation is evaluated (a lost device is back).
        self.hold_s = config.alarms.device_lost.medium_after_s
        #: Readings evaluated (not noted as repeats).
        self.evaluations = 0
        #: Evaluations that may have brought a deadline earlier: a caller's bound on the next
        #: deadline (`due_by`) holds until this changes. A valid reading inside every limit
        #: with every rule idle (most of them) moves deadlines only later.
        self.moves = 0

    @property
    def phase(self) -> Phase | None:
        return self.timeline.phase

    @property
    def running(self) -> bool:
        return self.session_id is not None and self.phase is not Phase.ENDED

    def next_due(self) -> float:
        """The next deadline, exactly (nothing is after INF)."""
        return self.due_by(INF)

    def due_by(self, now: float) -> float:
        """`next_due` if it is at or before `now`; else some time after `now` that no
        deadline comes before until the next evaluation (the alarm engine then need not work
        out its exact next deadline, once per reading)."""
        return self._due_with(self.alarms.due_by(now))

    def _due_with(self, alarms_due: float) -> float:
        """The next deadline of the timeline, the BP schedule and readiness, or `alarms_due`
        (the alarm engine's, as the caller asked it) if earlier."""
        due = self.timeline.next_due()
        due = min(INF if due is None else due, alarms_due, self.discharge.next_due())
        return due if self.schedule is None else min(due, self.schedule.next_due())

    def advance(self, now: float) -> list[Event]:
        """Everything due up to `now`, each event stamped with the time it was due."""
        out: list[Event] = []
        while (due := self.due_by(now)) <= now:
            if self._repeat and min(self._repeat.values()) < due:
                # Frames that came before the deadline count for it: evaluate the last ones.
                out += self._evaluate_repeats(before=due)
                continue
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

    def on_frames(self, device: str, t: float) -> list[Event]:
        """Valid frames of `device` that repeat its last reading arrived at `t` (a device that
        gives a reading only when its values change); call `advance(t)` first."""
        last = self._last.get(device)
        if last is None or t <= self._evaluated[device]:
            return []
        if device in self._eager or t >= self.repeat_due(device):
            return self._evaluate(replace(last, t=t))
        self._repeat[device] = t
        return []

    def repeat_due(self, device: str) -> float:
        """From when a frame repeating `device`'s last reading must be evaluated at once: the
        first after a command, `hold_s` after the last evaluation, and when the baseline
        (once a second before the dose) or readiness (once a second after it) samples."""
        last = self._last.get(device)
        if last is None:
            return INF
        if device in self._eager:
            return -INF
        due = self._evaluated[device] + self.hold_s
        alarms = self.alarms
        if not alarms.dosed and alarms.phase is Phase.BASELINE and not int(last.flags) & _INVALID:
            due = min(due, alarms.baseline.next_sample_t)
        if self.discharge.active:
            due = min(due, self.discharge.next_eval_t)
        return due

    def on_reading(self, reading: Reading) -> list[Event]:
        """Evaluate a reading; call `advance(reading.t)` first so that earlier deadlines fire."""
        device = reading.device
        if device in self._streaming:
            last = self._last.get(device)
            if last is not None and _same_values(reading, last):
                return self.on_frames(device, reading.t)
            out = self._evaluate_repeats(before=INF, reading=reading) if self._repeat else []
            return out + self._evaluate(reading)
        out = self._evaluate_repeats(before=INF) if self._repeat else []
        return out + self._evaluate(reading)

    def take_quiet(
        self, readings: ReadingColumns, start: int, until: float
    ) -> tuple[int, list[Event]]:
        """`on_reading` for `readings[start:]` (a streaming device's, each after `advance`
        to its time) as long as each is quiet (valid, inside every limit, every limit and
        signal rule idle: the alarm rules only note how long its values stand) and comes
        before `until` and every deadline, in one pass; each is evaluated (a repeat among
        them too, as the module docstring allows). Returns where it stopped (`start`: it
        took none, the caller goes one by one) and the events of the last one taken: only
        discharge readiness can have any, and the run stops at the first that has."""
        device = readings.device
        if (
            device not in self._streaming
            or self._repeat
            or device in self._eager
            or start >= len(readings)
            or not self.alarms.may_take(readings, start)
        ):
            return start, []
        due = min(until, self._due_with(self.alarms.due_but_silence_of(device)))
        stop = self.alarms.quiet_run(readings, start, due)
        out: list[Event] = []
        if stop > start and self.discharge.active:
            stop, out = self._readiness_run(readings, start, stop)
        if stop == start:
            return start, []
        self.alarms.take_run(readings, start, stop)
        last = self._last[device] = readings[stop - 1]
        self._evaluated[device] = last.t
        self.evaluations += stop - start
        if out:
            self.moves += 1
        return stop, out

    def _readiness_run(
        self, readings: ReadingColumns, start: int, stop: int
    ) -> tuple[int, list[Event]]:
        """Discharge readiness through quiet `readings[start:stop]` as `_evaluate_rules`
        follows it: where it stops (before a deadline of its own, or after the first that
        changes readiness) and that one's events."""
        discharge = self.discharge
        moves, due = discharge.moves, discharge.next_due()
        ts, spo2s, prs = readings.t, readings.spo2, readings.pr
        for k in range(start, stop):
            t = ts[k]
            if t >= due:
                return k, []
            discharge.oximetry(t, spo2s[k], prs[k])
            if discharge.moves != moves:  # the SpO2 window started again: a new deadline
                moves, due = discharge.moves, min(due, discharge.next_due())
                self.moves += 1
            if discharge.due(t) and (out := self._readiness(t)):
                return k + 1, out
        return stop, []

    def _evaluate_repeats(self, *, before: float, reading: Reading | None = None) -> list[Event]:
        """Evaluate the repeats noted before `before`, oldest first; for `reading`'s own device
        only when its evaluation would not restart all that the repeat refreshes (it comes
        `hold_s` or more after the last evaluation, is invalid, or lacks a value)."""
        out: list[Event] = []
        noted = list(self._repeat.items())
        if len(noted) > 1:
            noted.sort(key=lambda item: item[1])
        for device, t in noted:
            if t >= before:
                continue
            del self._repeat[device]
            if (
                reading is not None
                and device == reading.device
                and _restarts(reading, self._last[device], self._evaluated[device] + self.hold_s)
            ):
                continue
            out += self._evaluate(replace(self._last[device], t=t))
        return out

    def _settle(self) -> list[Event]:
        """Before a command: evaluate the repeats noted so far; the next frame of each device
        is evaluated in full (the command may have reset what a repeat would find)."""
        out = self._evaluate_repeats(before=INF) if self._repeat else []
        self._eager.update(self._last)
        return out

    def _evaluate(self, reading: Reading) -> list[Event]:
        device = reading.device
        if device in self._streaming:
            self._last[device] = reading
            self._evaluated[device] = reading.t
            self._eager.discard(device)
            self._repeat.pop(device, None)
        self.evaluations += 1
        alarms = self.alarms
        faults, moves = len(alarms.faults), alarms.moves
        discharged = self.discharge.moves
        out = self._evaluate_rules(reading)
        if (
            out
            or alarms.moves != moves
            or device in self.nibp_devices
            or self.discharge.moves != discharged
        ):
            self.moves += 1
        if len(alarms.faults) != faults:
            # A rule failed on it: the next frame is evaluated in full (what a repeat finds
            # depends on rules that may have been skipped).
            self._eager.add(device)
        return out

    def _evaluate_rules(self, reading: Reading) -> list[Event]:
        t = reading.t
        bp = reading.device in self.nibp_devices and reading.sys is not None
        invalid = int(reading.flags) & _INVALID  # a plain int: IntFlag's & is slow
        if bp and reading.dia is not None and not invalid:
            assert reading.sys is not None
            self._bp_recent.append((t, reading.sys, reading.dia))
        out = self._after_alarms(self.alarms.on_reading(reading))
        if bp and self.schedule is not None:
            self.schedule.measured(t)
        discharge = self.discharge
        if discharge.active:
            if bp:
                assert reading.sys is not None
                if reading.dia is not None:
                    discharge.bp(reading.sys, reading.dia)
            elif reading.device not in self.nibp_devices:
                if invalid:
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
        settled = self._settle()
        self.session_id = session_id
        self.predose_missing = None
        self.alarms.start(t)
        self.discharge.reset()
        self.infusion, self.prompting = None, False
        self._bp_recent.clear()
        if self.schedule is not None:
            self.schedule.infusion(infusing=False)
        out: list[Event] = [
            *settled,
            SessionStarted(t=t, session_id=session_id, route=route, user=user),
        ]
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
        self._eager.update(self._last)
        self.session_id = session.session_id
        self.predose_missing = session.predose_missing
        alarms = self.alarms
        alarms.start(session.started_t)
        alarms.restart(now)
        self.timeline.start(session.started_t, session.route)
        self.infusion, self.prompting = None, False
        self._bp_recent.clear()
        self._bp_recent.extend(session.bp_readings)
        if session.dose_t is not None:
            self.timeline.dose(session.dose_t)
            infusion = self.infusion = session.infusion
            if infusion is not None:
                self.timeline.infusion_started()
                if infusion.stopped_t is not None:
                    self.timeline.infusion_stopped(infusion.stopped_t)
            alarms.resume(session.baseline)
            self._dose_dependents(session.dose_t, now=now)  # no phase yet: no events
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
                           notes=session.notes, infusion=session.infusion),
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
        return out + self._prompt(now)

    def mark_dose(
        self, t: float, *, user: str, source: str, reason: str | None = None
    ) -> list[Event]:
        """A dose given at once (bolus, IM, intranasal, oral); see `start_infusion` for IV."""
        reason = self._dose_allowed(reason)
        return self._dose(t, user=user, source=source, reason=reason, plan=None)

    def start_infusion(
        self,
        t: float,
        *,
        amount: float | None,
        unit: DoseUnit | None,
        planned_min: float | None,
        user: str,
        source: str,
        reason: str | None = None,
    ) -> list[Event]:
        """The start of an infusion: it is the dose (same gate), with its plan. Amounts and
        minutes are None only where they are not known (a replay)."""
        if self.running and self.infusion is not None:
            msg = "an infusion was already started in this session"
            raise CommandRejected(msg)
        self._dose_allowed(None, gate=False)
        check_amount(amount, unit, what="planned amount")
        check_planned(amount, planned_min)
        reason = self._dose_allowed(reason)
        self.infusion = Infusion(
            started_t=t, planned_amount=amount, unit=unit, planned_min=planned_min
        )
        plan = {
            "planned_amount": amount,
            "unit": None if unit is None else unit.value,
            "planned_min": planned_min,
        }
        out = self._dose(t, user=user, source=source, reason=reason, plan=plan)
        return out + self._prompt(t)  # a confirmed critical BP already shown

    def pause_infusion(self, t: float, *, reason: str, user: str, source: str) -> list[Event]:
        """The nurse paused the infusion (a BP surge ...); the prompt goes."""
        infusion = self._infusion_in_progress("pause")
        if infusion.paused:
            msg = "the infusion is already paused"
            raise CommandRejected(msg)
        why = check_reason(reason, what="a pause", required=True)
        out = self._settle()
        self.infusion = infusion.paused_at(t)
        detail = {"reason": why, "infused_min": _minutes(infusion.infused_s(t))}
        out.append(NurseAction(t=t, action="infusion_pause", user=user, source=source,
                               detail=detail))  # fmt: skip
        return out + self._prompt(t)

    def resume_infusion(self, t: float, *, reason: str, user: str, source: str) -> list[Event]:
        infusion = self._infusion_in_progress("resume")
        if not infusion.paused:
            msg = "the infusion is not paused"
            raise CommandRejected(msg)
        why = check_reason(reason, what="a resume", required=True)
        out = self._settle()
        self.infusion = infusion.resumed_at(t)
        detail = {"reason": why, "paused_min": _minutes(t - infusion.pauses[-1][0])}
        out.append(NurseAction(t=t, action="infusion_resume", user=user, source=source,
                               detail=detail))  # fmt: skip
        return out + self._prompt(t)

    def stop_infusion(
        self,
        t: float,
        *,
        amount: float | None,
        unit: DoseUnit | None,
        user: str,
        source: str,
        reason: str | None = None,
    ) -> list[Event]:
        """The infusion stopped with `amount` given (`unit` None: the plan's unit)."""
        infusion = self._infusion_in_progress("stop")
        unit = unit or infusion.unit
        check_amount(amount, unit, what="amount given")
        why = check_reason(reason, what="a stop", required=False)
        settled = self._settle()
        done = self.infusion = infusion.stopped_at(t, amount, unit)
        detail: dict[str, Any] = {
            "given_amount": amount,
            "unit": None if unit is None else unit.value,
            "infused_min": _minutes(done.infused_s(t)),
            "paused_min": _minutes(done.paused_s(t)),
            "elapsed_min": _minutes(done.elapsed_s(t)),
            "pauses": len(done.pauses),
        }
        if why is not None:
            detail["reason"] = why
        out: list[Event] = [*settled, NurseAction(t=t, action="infusion_stop", user=user,
                                                  source=source, detail=detail)]  # fmt: skip
        self.timeline.infusion_stopped(t)
        out += self._infusion_dependents(t)
        return out + self._prompt(t)

    def _dose_allowed(self, reason: str | None, *, gate: bool = True) -> str | None:
        """The override reason, if the dose may be marked now (else `CommandRejected`);
        without `gate`, only whether a session runs without a dose."""
        if not self.running:
            msg = "no session is running: start one first"
            raise CommandRejected(msg)
        if self.timeline.dose_t is not None:
            msg = "the dose was already marked"
            raise CommandRejected(msg)
        reason = check_reason(reason, what="an override", required=False)
        if gate and self.alarms.dose_gate_closed and reason is None:
            bp = self.alarms.baseline.bp()
            shown = "" if bp is None else f" (baseline {bp[0]:.0f}/{bp[1]:.0f} mmHg)"
            msg = f"dose_gate is high{shown}: dosing needs an override with a reason"
            raise CommandRejected(msg)
        if gate:
            missing = self._predose_missing()
            if missing and reason is None:
                msg = (
                    f"the pre-dose checklist is not complete ({', '.join(missing)}): "
                    "dosing needs an override with a reason"
                )
                raise CommandRejected(msg)
        return reason

    def _dose(
        self, t: float, *, user: str, source: str, reason: str | None, plan: dict[str, Any] | None
    ) -> list[Event]:
        detail: dict[str, Any] = {} if reason is None else {"override_reason": reason}
        missing = self._predose_missing()
        if missing:
            detail["checklist_missing"] = list(missing)
        if plan is not None:
            detail["infusion"] = True
        out = self._settle()
        out.append(NurseAction(t=t, action="dose", user=user, source=source, detail=detail))
        if plan is not None:
            out.append(NurseAction(t=t, action="infusion_start", user=user, source=source,
                                   detail=plan))  # fmt: skip
            self.timeline.infusion_started()
        out += self._after_alarms(self.alarms.dose(t))
        out += self._dose_dependents(t, now=t)
        return out + self._phase_events(self.timeline.dose(t))

    def _infusion_in_progress(self, verb: str) -> Infusion:
        infusion = self.infusion
        if not self.running or infusion is None:
            what = "no infusion was started" if verb == "stop" else "no infusion is running"
            msg = f"{what}: nothing to {verb}"
            raise CommandRejected(msg)
        if infusion.stopped:
            msg = f"the infusion was already stopped: nothing to {verb}"
            raise CommandRejected(msg)
        return infusion

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

    def _dose_dependents(self, dose_t: float, *, now: float) -> list[Event]:
        route = self.timeline.route
        assert route is not None
        minimum = self.config.timeline.for_route(route).discharge_after_min * 60.0
        self.discharge.dose(dose_t, minimum_s=minimum)
        if self.schedule is not None:
            self.schedule.dose(dose_t, now=now)
        return self._infusion_dependents(now)

    def _infusion_dependents(self, t: float) -> list[Event]:
        """The BP interval, `nibp_overdue` and discharge readiness follow the infusion."""
        infusion = self.infusion
        infusing = infusion is not None and not infusion.stopped
        if infusion is not None:
            route = self.timeline.route
            assert route is not None
            minimum = self.config.timeline.for_route(route).discharge_after_stop_min * 60.0
            self.discharge.infusion(stopped_t=infusion.stopped_t, minimum_s=minimum)
        if self.schedule is not None:
            self.schedule.infusion(infusing=infusing)
        return self.alarms.set_infusion(t, infusing=infusing)

    def end_session(self, t: float, *, user: str, source: str) -> list[Event]:
        if not self.running:
            msg = "no session is running"
            raise CommandRejected(msg)
        if self.infusion is not None and not self.infusion.stopped:
            msg = "the infusion is still running: stop it first, with the amount given"
            raise CommandRejected(msg)
        out = self._settle()
        out.append(NurseAction(t=t, action="session_end", user=user, source=source))
        out += self._phase_events(self.timeline.end(t))
        out += self.alarms.end_session(t)
        self.discharge.reset()
        return out + self._prompt(t)

    def acknowledge(self, t: float, *, alarm_id: str, user: str, source: str) -> list[Event]:
        shown = self.alarms.showing(alarm_id)
        if shown is None:
            msg = f"{alarm_id} is not active"
            raise CommandRejected(msg)
        out = self._settle()
        detail = {"alarm_id": alarm_id, "priority": shown[0].label}
        out.append(NurseAction(t=t, action="ack", user=user, source=source, detail=detail))
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
        """A medium or high BP alarm raised: ask for a confirming reading at once. `bp_high`
        changed: the infusion prompt follows it."""
        if not events:
            return events  # most readings
        out = events
        schedule = self.schedule
        if schedule is not None and schedule.config.remeasure_on_alarm and self.running:
            for event in events:
                if (
                    isinstance(event, AlarmTransition)
                    and event.alarm_id in _BP_ALARMS
                    and event.state is AlarmState.ACTIVE
                    and event.priority >= Priority.MEDIUM
                ):
                    out = [*events, schedule.request(event.t, f"{event.alarm_id} alarm")]
                    break
        bp_high = [
            e.t for e in events if isinstance(e, AlarmTransition) and e.alarm_id == "bp_high"
        ]
        return out + self._prompt(bp_high[-1]) if bp_high else out

    def _prompt(self, t: float) -> list[Event]:
        """The infusion prompt (DESIGN §4): shown while `bp_high` is high and active and the
        infusion runs; it goes when the infusion is paused or stopped or the alarm is no
        longer high. Advice to the nurse: nothing here acts on a pump."""
        infusion = self.infusion
        high = self.alarms.showing("bp_high") == (Priority.HIGH, AlarmState.ACTIVE)
        wanted = self.running and infusion is not None and infusion.running and high
        if wanted == self.prompting:
            return []
        self.prompting = wanted
        if wanted:
            confirmations = self.config.alarms.bp_high.high_confirmations
            count = max(1, min(self.alarms.bp_high.run, confirmations))
            readings = tuple(self._bp_recent)[-count:]
            return [InfusionPrompt(t=t, active=True, readings=readings)]
        shown = self.alarms.showing("bp_high")
        if infusion is None or infusion.stopped:
            reason = "infusion stopped"
        elif infusion.paused:
            reason = "infusion paused"
        elif not self.running:
            reason = "session ended"
        elif shown is None:
            reason = "bp_high cleared"
        elif shown[1] is AlarmState.LATCHED:
            reason = "bp_high condition gone (latched)"
        else:
            reason = "bp_high no longer high"
        return [InfusionPrompt(t=t, active=False, reason=reason)]

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
