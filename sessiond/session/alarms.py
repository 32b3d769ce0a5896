"""The alarm engine: validity gate → condition (limits, delays, hysteresis) → occurrence state.

Pure logic with time passed in. Every alarm id of DESIGN §5 is a rule (`rules`, `bp`); the
engine feeds them readings and time, shows the most urgent level of each id, and emits an
`AlarmTransition` whenever what an id shows (priority, state) changes. On top of the rules it
keeps the signal layer: acknowledgement (one occurrence), the global audio pause (ended early
by a new high alarm) and escalation of an unacknowledged medium alarm. Deadlines are reported
by `next_due` so that the daemon and replay fire them when due, whether or not a byte arrives.

The cost of a reading does not grow with the rules that have nothing to do: the engine keeps a
lower bound of its next deadline (when it is reached, the silence deadlines that each frame
moves are read again; every rule is asked only if it is still reached, or after anything but
a reading), and recomputes what each id shows only when a rule reports a change. While every
limit and signal rule is idle, a valid reading inside every limit (most readings) only
refreshes how long its values stand: the engine does that itself (`_quiet_band`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sessiond.model import (
    INVALID_FOR_ALARMS,
    PROBE_OFF,
    AlarmState,
    AlarmTransition,
    AudioPause,
    BaselineCaptured,
    Phase,
    Priority,
    Reading,
)
from sessiond.session.baseline import Baseline
from sessiond.session.bp import BpHighRule, BpRiseRule, DoseGateRule, NibpErrorRule, NibpOverdueRule
from sessiond.session.rules import (
    INF,
    POOR_SIGNAL,
    Display,
    Level,
    LevelState,
    LimitRule,
    Rule,
    SilenceRule,
    TechnicalRule,
)
from sessiond.session.settings import BaselineConfig, NibpConfig, TechnicalAlarmConfig

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from sessiond.model import Event, ReadingColumns
    from sessiond.session.settings import AlarmsConfig

__all__ = ["INF", "AlarmEngine", "RestoredAlarm"]

_INVALID_FOR_ALARMS = int(INVALID_FOR_ALARMS)
_PROBE_OFF = int(PROBE_OFF)
_BASELINE = Phase.BASELINE
#: Flags that some oximeter rule acts on (invalid data, no finger, a poor signal).
_UNQUIET = _INVALID_FOR_ALARMS | _PROBE_OFF | POOR_SIGNAL
#: No reading is quiet (a limit or signal rule is not idle, or what is shown is not settled).
_NO_BAND = (INF, -INF, INF, -INF)

Shown = tuple[Priority, AlarmState]

#: Technical alarms reported by the daemon about itself (not by a device), and their
#: priority: a fault in the monitor is an alarm-system failure (clinical.md §1.6, Philips
#: "System Error"); a record that cannot be written loses no alarm but must be seen.
#: `console_unwatched`: no signed-in console has watched the session for a few seconds
#: (clinical.md §4.4). Medium: nobody sees the screen, but nothing is known to be wrong with
#: the patient, so it does not take the room's lights (a high alarm's override); it sounds on
#: the room's own speaker whatever its priority (`sessiond.room.alarm_tone`).
REPORTED: dict[str, Priority] = {
    "monitor_fault": Priority.HIGH,
    "record_fault": Priority.MEDIUM,
    "console_unwatched": Priority.MEDIUM,
}

#: Alarms about the patient of a session (and its BP programme): ending the session ends
#: them. No reading can clear them afterwards (the BP module measures no more), and the
#: next patient must not inherit them. The equipment's alarms (`device_lost`, `sensor_off`,
#: `signal_poor`) and the daemon's own stay: they are about the room, not the patient.
SESSION_ALARMS = frozenset(
    {
        "spo2_low",
        "pr_high",
        "pr_low",
        "bp_high",
        "bp_low",
        "bp_rise",
        "dose_gate",
        "nibp_error",
        "nibp_overdue",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoredAlarm:
    """An alarm the record shows when the daemon stopped, to be shown again on resume."""

    alarm_id: str
    priority: Priority
    state: AlarmState
    acknowledged: bool = False
    device: str | None = None
    value: float | None = None
    limit: float | None = None


class ReportedRule(Rule):
    """A technical condition another part reports (`set`); a one-shot one (a fault that
    happened) stays shown until acknowledged, a lasting one while the condition lasts."""

    def __init__(self, alarm_id: str, priority: Priority, *, one_shot: bool) -> None:
        self.level = Level(priority=priority, limit=0, delay=0, latched=False)
        super().__init__(alarm_id, [self.level])
        self.one_shot = one_shot

    def set(self, *, active: bool) -> None:
        if active:
            self.level.state, self.level.acked = LevelState.ON, False
        elif not self.one_shot:
            self.level.reset()

    def acknowledge(self) -> None:
        if self.one_shot:
            self.level.reset()
        else:
            super().acknowledge()


class AlarmEngine:
    """Every alarm rule of one room; feed it readings and time, collect transitions."""

    def __init__(
        self,
        *,
        config: AlarmsConfig,
        streaming: Iterable[str],
        nibp: Iterable[str] = (),
        start: float = 0.0,
        schedule: NibpConfig | None = None,
        baseline: BaselineConfig | None = None,
    ) -> None:
        self.config = config
        self.schedule = schedule or NibpConfig()
        self.phase: Phase | None = None
        self.dosed = False
        #: An infusion started and not stopped: `nibp_overdue` counts its BP interval.
        self.infusing = False
        self.baseline = Baseline(baseline or BaselineConfig())
        # A value stands for the patient until its device would be declared lost.
        hold_s = config.device_lost.medium_after_s
        self.spo2_low = LimitRule(
            "spo2_low", param="spo2", below=True, config=config.spo2_low, hold_s=hold_s
        )
        self.pr_high = LimitRule(
            "pr_high", param="pr", below=False, config=config.pr_high, hold_s=hold_s
        )
        self.pr_low = LimitRule(
            "pr_low", param="pr", below=True, config=config.pr_low, hold_s=hold_s
        )
        self.sensor_off = TechnicalRule("sensor_off", config=config.sensor_off)
        self.signal_poor = TechnicalRule("signal_poor", config=config.signal_poor)
        self.silence = {
            device: SilenceRule("device_lost", config=config.device_lost, since=start,
                                device=device)
            for device in streaming
        }  # fmt: skip
        self.nibp_devices = frozenset(nibp)
        # A BP reading stands until the next one: it never goes stale.
        self.bp_low = LimitRule("bp_low", param="sys", below=True, config=config.bp_low, hold_s=INF)
        self.bp_high = BpHighRule(config.bp_high)
        self.bp_rise = BpRiseRule(config.bp_rise)
        self.dose_gate = DoseGateRule(config.dose_gate)
        self.nibp_error = NibpErrorRule(config.nibp_error)
        self.nibp_overdue = NibpOverdueRule(config.nibp_overdue)
        # The BP module is silent between measurements: it is lost when its link says so
        # (port failed, a command unanswered), not after a silence.
        lost = TechnicalAlarmConfig(priority="medium", delay_s=0)
        self.nibp_lost = {
            device: TechnicalRule("device_lost", config=lost, device=device) for device in nibp
        }
        self.reported = {
            alarm_id: ReportedRule(alarm_id, priority, one_shot=alarm_id == "monitor_fault")
            for alarm_id, priority in REPORTED.items()
        }

        oximeter: list[tuple[Rule, bool]] = [
            (self.spo2_low, config.spo2_low.enabled),
            (self.pr_high, config.pr_high.enabled),
            (self.pr_low, config.pr_low.enabled),
            (self.sensor_off, config.sensor_off.enabled),
            (self.signal_poor, config.signal_poor.enabled),
        ]
        self.rules: list[Rule] = [rule for rule, enabled in oximeter if enabled]
        self.limits = [r for r in self.rules if isinstance(r, LimitRule)]
        if config.device_lost.enabled:
            self.rules += self.silence.values()
            self.rules += self.nibp_lost.values()
        if self.nibp_devices:
            bp: list[tuple[Rule, bool]] = [
                (self.bp_high, config.bp_high.enabled),
                (self.bp_low, config.bp_low.enabled),
                (self.bp_rise, config.bp_rise.enabled),
                (self.dose_gate, config.dose_gate.enabled),
                (self.nibp_error, config.nibp_error.enabled),
                (self.nibp_overdue, config.nibp_overdue.enabled),
            ]
            self.rules += [rule for rule, enabled in bp if enabled]
        self.rules += self.reported.values()
        self._by_id: dict[str, list[Rule]] = {}
        for rule in self.rules:
            self._by_id.setdefault(rule.alarm_id, []).append(rule)
        self._showing: dict[str, Shown | None] = {}
        # The signal layer.
        self._escalate_after = {
            alarm_id: cfg.escalate_after_s
            for alarm_id, cfg in (
                ("spo2_low", config.spo2_low),
                ("pr_high", config.pr_high),
                ("pr_low", config.pr_low),
                ("bp_low", config.bp_low),
            )
            if cfg.escalate_after_s is not None
        }
        self._escalate_due: dict[str, float] = {}
        #: Rules that raised, taken out of service, and what they raised (for the log).
        self.out_of_service: set[Rule] = set()
        self.faults: list[tuple[str, Exception]] = []
        #: The device each shown technical alarm is about, for its cleared event.
        self._devices: dict[str, str] = {}
        self._escalated: set[str] = set()
        self.acknowledged: set[str] = set()
        self.paused_until: float | None = None
        #: No deadline comes before this (-INF: unknown, `next_due` recomputes it).
        self._due = -INF
        #: The same for every deadline but the oximeters' silence: theirs move on with each
        #: frame, and are read from `_silent` when `_due` is reached, not recomputed.
        self._due_rest = -INF
        self._silent = [rule for rule in self.rules if isinstance(rule, SilenceRule)]
        #: What each id shows is up to date: a reading that changes no rule emits nothing.
        self._settled = False
        #: Quiet readings (`_quiet_band`): SpO2 and PR ranges (low, high, low, high) that
        #: cross no limit while every limit and signal rule is idle; None: work it out.
        self._band: tuple[float, float, float, float] | None = None
        #: Changes whenever a deadline may have come earlier (a caller's bound is stale).
        self.moves = 0

    # Time ---------------------------------------------------------------------------------

    def next_due(self) -> float:
        """The next deadline, exactly (every rule asked)."""
        rest = silent = INF
        for rule in self.rules:
            try:
                rule_due = rule.next_due()
            except Exception as exc:  # noqa: BLE001  (a broken rule must not stop the others)
                self._broken(rule, exc)
                continue
            if isinstance(rule, SilenceRule):
                silent = min(silent, rule_due)
            else:
                rest = min(rest, rule_due)
        if self._escalate_due:
            rest = min(rest, *self._escalate_due.values())
        if self.paused_until is not None:
            rest = min(rest, self.paused_until)
        self._due_rest = rest
        self._due = due = min(rest, silent)
        return due

    def due_by(self, now: float) -> float:
        """The next deadline if it is at or before `now`; else some time after `now`."""
        due = self._due
        if due > now or (due := self._bound()) > now:
            return due
        return self.next_due()

    def _bound(self) -> float:
        """A new lower bound once `_due` is reached: the silence deadlines as they are now."""
        self._due = due = self._with_silences(but=None)
        return due

    def _with_silences(self, *, but: str | None) -> float:
        """The bound on every deadline but the silences', and the silence deadlines of every
        device but `but` as they are now."""
        due = self._due_rest
        for rule in self._silent:
            if rule.device != but:
                due = min(due, rule.medium.due, rule.high.due)
        return due

    def advance(self, now: float) -> list[Event]:
        """Fire every deadline up to `now`, in time order, each at the time it was due."""
        if self._due > now or self._bound() > now:
            return []
        self._band = None  # levels move
        out: list[Event] = []
        while (due := self.next_due()) <= now:
            for rule in self.rules:
                try:
                    rule.advance(due)
                except Exception as exc:  # noqa: BLE001
                    self._broken(rule, exc)
            for alarm_id, at in list(self._escalate_due.items()):
                if at <= due:
                    del self._escalate_due[alarm_id]
                    self._escalated.add(alarm_id)
            if self.paused_until is not None and self.paused_until <= due:
                self.paused_until = None
                out.append(AudioPause(t=due, paused=False, reason="timeout"))
            out += self._transitions(due)
        return out

    def _stale(self) -> None:
        """Anything but a reading or a deadline: the next deadline and what each id shows are
        worked out again in full (these are rare; readings are not)."""
        self._due = self._due_rest = -INF
        self._settled = False
        self._band = None
        self.moves += 1

    def _broken(self, rule: Rule, exc: Exception) -> None:
        """A rule raised: take it out of service (it shows what it showed) and raise
        `monitor_fault`, so that one fault never stops the other rules or the timer."""
        self._stale()
        if rule in self.rules:
            self.rules.remove(rule)
        if rule in self._silent:
            self._silent.remove(rule)
        if rule in self.limits:
            self.limits.remove(rule)
        self.out_of_service.add(rule)
        self.faults.append((rule.alarm_id, exc))
        if rule is not self.reported["monitor_fault"]:
            self.reported["monitor_fault"].set(active=True)

    def _observe(self, rule: Rule, observe: Callable[[], object]) -> None:
        if rule in self.out_of_service:
            return
        try:
            observe()
        except Exception as exc:  # noqa: BLE001
            self._broken(rule, exc)

    # Session ------------------------------------------------------------------------------

    def start(self, t: float) -> None:
        """A new session: a fresh baseline, and the first BP reading is due from now."""
        self._stale()
        self.dosed = False
        self.infusing = False
        self.baseline.reset()
        self.bp_high.run = 0
        self.nibp_overdue.start(t)

    def end_session(self, t: float) -> list[Event]:
        """The nurse ended the session: its alarms end with it (a deliberate operator action,
        as an ALARM RESET), each with a `cleared` transition in the record. An oximeter left
        on a finger raises its alarms again from new readings, with their delays."""
        self._stale()
        for alarm_id in SESSION_ALARMS:
            for rule in self._by_id.get(alarm_id, []):
                for level in rule.levels:
                    level.reset()
                if isinstance(rule, LimitRule):
                    rule.valid_until = -INF
            self._escalated.discard(alarm_id)
            self._escalate_due.pop(alarm_id, None)
            self.acknowledged.discard(alarm_id)
        self.bp_high.run = 0
        self.nibp_error.failures = 0
        return self._transitions(t)

    def set_phase(self, t: float, phase: Phase) -> list[Event]:
        self._stale()
        self.phase = phase
        for rule in self.silence.values():
            rule.set_phase(t, phase)
        interval = self.schedule.interval_s(phase, infusion=self.infusing)
        self.nibp_overdue.set_interval(t, interval)
        return self._transitions(t)

    def set_infusion(self, t: float, *, infusing: bool) -> list[Event]:
        """An infusion started or stopped: `nibp_overdue` follows the BP interval it sets."""
        self._stale()
        self.infusing = infusing
        if self.phase is None:
            return []
        overdue = self.nibp_overdue
        interval = self.schedule.interval_s(self.phase, infusion=infusing)
        self._observe(overdue, lambda: overdue.set_interval(t, interval))
        return self._transitions(t)

    def dose(self, t: float) -> list[Event]:
        """The dose was given: fix the baseline and open the gate."""
        self._stale()
        self.dosed = True
        self.dose_gate.end()
        out: list[Event] = [self.baseline.capture(t)]
        return out + self._transitions(t)

    def resume(self, captured: BaselineCaptured | None) -> None:
        """A resumed session after its dose: the baseline from its record."""
        self._stale()
        self.dosed = True
        if captured is not None:
            self.baseline.restore(captured)

    def restart(self, t: float) -> None:
        """The daemon's clock starts at `t` (a resume continues the session's time axis)."""
        self._stale()
        for rule in self.silence.values():
            rule.restart(t)

    def restore_bp(self, readings: Iterable[tuple[float, float, float]]) -> None:
        """The session's valid BP readings (t, SYS, DIA) from the record, oldest first.

        Before the dose they are the baseline so far (and the gate's input); in any phase
        the last one is when BP was last measured, and the run of high readings counts
        toward `bp_high`'s confirmation.
        """
        self._stale()
        c = self.config.bp_high
        for t, sys, dia in readings:
            if not self.dosed:
                self.baseline.add_bp(sys, dia)
            high = sys >= c.high_sys_mmhg or dia >= c.high_dia_mmhg
            self.bp_high.run = self.bp_high.run + 1 if high else 0
            self.nibp_overdue.measured(t)

    def restore(self, t: float, alarms: Iterable[RestoredAlarm]) -> list[Event]:
        """Show again what the record showed when the daemon stopped: level, latch and
        acknowledgement. The next readings take each alarm on from there."""
        self._stale()
        for alarm in alarms:
            rules = self._by_id.get(alarm.alarm_id, [])
            if alarm.device is not None:
                rules = [r for r in rules if r.device in (None, alarm.device)] or rules
            if not rules:
                continue
            rule = rules[0]
            levels = [lv for lv in rule.levels if lv.priority <= alarm.priority] or rule.levels
            level = levels[-1]
            if level.priority < alarm.priority:
                self._escalated.add(alarm.alarm_id)
            if alarm.state is AlarmState.LATCHED:
                level.state, level.due = LevelState.LATCHED, INF
            else:
                level.state, level.due = LevelState.ON, INF
                level.acked = alarm.acknowledged
                level.value = alarm.value
                if alarm.limit is not None:
                    level.limit = alarm.limit
            if isinstance(rule, NibpErrorRule):
                rule.failures = max(rule.failures, 1 if level is rule.first else 2)
            if isinstance(rule, SilenceRule):
                rule.restart(t)
            if alarm.acknowledged:
                self.acknowledged.add(alarm.alarm_id)
        return self._transitions(t, restored=True)

    def restore_pause(self, t: float, until_t: float) -> list[Event]:
        """An audio pause that was running when the daemon stopped, if not over yet."""
        self._stale()
        if until_t <= t:
            return []
        self.paused_until = until_t
        return [AudioPause(t=t, paused=True, until_t=until_t, reason="restored")]

    def report(self, t: float, alarm_id: str, *, active: bool) -> list[Event]:
        """A technical condition of the daemon itself (`REPORTED`): raised or gone."""
        self._stale()
        self.reported[alarm_id].set(active=active)
        return self._transitions(t)

    @property
    def dose_gate_closed(self) -> bool:
        return self.dose_gate in self.rules and self.dose_gate.closed

    # Nurse actions ----------------------------------------------------------------------

    def showing(self, alarm_id: str) -> Shown | None:
        """What the alarm shows now (priority, state), or None when it is not shown."""
        return self._showing.get(alarm_id)

    def any_shown(self) -> bool:
        return any(self._showing.values())  # what is shown is a (priority, state) pair

    def acknowledge(self, t: float, alarm_id: str) -> list[Event]:
        """A nurse acknowledged `alarm_id`: its audio is silenced for this occurrence.

        A latched alarm whose condition is gone clears (ALARM RESET). An active alarm stays
        shown while its condition lasts (the visual indication is never silenced), and it
        no longer escalates.
        """
        self._stale()
        self.acknowledged.add(alarm_id)
        self._escalate_due.pop(alarm_id, None)
        for rule in self._by_id.get(alarm_id, []):
            rule.acknowledge()
        return self._transitions(t)

    def pause(self, t: float) -> list[Event]:
        """Pause alarm audio (every alarm) for the configured time."""
        self._stale()
        self.paused_until = t + self.config.audio.pause_s
        return [AudioPause(t=t, paused=True, until_t=self.paused_until, reason="nurse")]

    # Readings -----------------------------------------------------------------------------

    def on_reading(self, r: Reading) -> list[Event]:
        """Evaluate a reading that arrived at `r.t` (call `advance(r.t)` first)."""
        silence = self.silence.get(r.device)
        if silence is None:
            if r.device in self.nibp_devices:
                return self._on_bp(r)
            return []
        t = r.t
        flags = int(r.flags)  # plain int: IntFlag operators are slow on this path
        valid = not flags & _INVALID_FOR_ALARMS
        # Each rule says whether it changed a state or brought a deadline earlier; without
        # that, the bound on the next deadline holds and no id shows anything new.
        changed = silence.frame(t)
        spo2, pr = r.spo2, r.pr
        if not changed and self._quiet(flags, spo2, pr):
            self._values_stand(r.device, t)
            if not self.dosed and self.phase is _BASELINE:
                self.baseline.add_oximetry(t, spo2, pr)
            return []
        if self._observe_limits(r, valid=valid):
            changed = True
        if self._observe_signal(r, flags):
            changed = True
        if valid and not self.dosed and self.phase is _BASELINE:
            self.baseline.add_oximetry(t, spo2, pr)
        if changed:
            self._due = self._due_rest = -INF
            self._band = None
            self.moves += 1
        elif self._settled:
            return []
        return self._transitions(t)

    def quiet_run(self, readings: ReadingColumns, start: int, until: float) -> int:
        """How far from `start` the readings (one streaming device's) are quiet, each as
        `on_reading` would take it on its short path after the ones before it, and come
        before `until` and before their device's silence would fire. Changes nothing."""
        if not self.may_take(readings, start):
            return start
        silence = self.silence[readings.device]
        spo2_low, spo2_high, pr_low, pr_high = self._quiet_band_now()
        lost_after, last, stop = silence.lost_after(), silence.last_frame, start
        ts, spo2s, prs = readings.t, readings.spo2, readings.pr
        # `_quiet` row by row, inline: this loop is the whole cost of a stretch.
        for t, spo2, pr in zip(ts[start:], spo2s[start:], prs[start:], strict=True):
            if (
                t >= until
                or t < last  # time went back: `frame` reports a change
                or last + lost_after <= t  # the silence deadline comes first
                or spo2 is None
                or pr is None
                or not spo2_low <= spo2 <= spo2_high
                or not pr_low <= pr <= pr_high
            ):
                break
            last = t
            stop += 1
        return stop

    def take_run(self, readings: ReadingColumns, start: int, stop: int) -> None:
        """The rules as after `readings[start:stop]` in turn, a `quiet_run`: how long its
        values stand, its device's silence, and the baseline's samples."""
        t = readings.t[stop - 1]
        self.silence[readings.device].frame(t)
        self._values_stand(readings.device, t)
        if not self.dosed and self.phase is _BASELINE:
            self.baseline.add_oximetry_run(
                readings.t[start:stop], readings.spo2[start:stop], readings.pr[start:stop]
            )

    def may_take(self, readings: ReadingColumns, start: int) -> bool:
        """Whether `readings[start]` is quiet (before the deadlines)."""
        silence = self.silence.get(readings.device)
        if silence is None or not silence.usual:
            return False
        return self._quiet(int(readings.flags), readings.spo2[start], readings.pr[start])

    def _quiet(self, flags: int, spo2: int | None, pr: int | None) -> bool:
        """A valid oximeter reading that no limit or signal rule would move (`_quiet_band`)."""
        if flags & _UNQUIET or spo2 is None or pr is None:
            return False
        spo2_low, spo2_high, pr_low, pr_high = self._quiet_band_now()
        return spo2_low <= spo2 <= spo2_high and pr_low <= pr <= pr_high

    def _values_stand(self, device: str, t: float) -> None:
        """What the limit and signal rules do with a quiet reading of `device` at `t`: its
        values stand from `t` on."""
        for rule in self.limits:
            rule.fresh(t)
        self.sensor_off.device = self.signal_poor.device = device

    def _quiet_band_now(self) -> tuple[float, float, float, float]:
        band = self._band
        if band is None:
            band = self._band = self._quiet_band()
        return band

    def due_but_silence_of(self, device: str) -> float:
        """No deadline but `device`'s silence comes before this (a bound until the next change
        or deadline)."""
        if self._due_rest == -INF:
            self.next_due()
        return self._with_silences(but=device)

    def _quiet_band(self) -> tuple[float, float, float, float]:
        """The SpO2 and PR ranges in which a valid oximeter reading moves no limit or signal
        rule (only the freshness of its values), while every one of them is idle and what
        each id shows is settled; `_NO_BAND` otherwise."""
        off, poor = self.sensor_off, self.signal_poor
        if (
            not self._settled
            or off.level.state is not LevelState.IDLE
            or poor.level.state is not LevelState.IDLE
        ):
            return _NO_BAND
        band = {"spo2": [-INF, INF], "pr": [-INF, INF]}
        for rule in self.limits:
            span = band.get(rule.param)
            if span is None or any(lv.state is not LevelState.IDLE for lv in rule.levels):
                return _NO_BAND
            # `LimitRule.observe`: an idle level is crossed below (or above) its limit.
            for lv in rule.levels:
                if rule.below:
                    span[0] = max(span[0], lv.limit)
                else:
                    span[1] = min(span[1], lv.limit)
        (spo2_low, spo2_high), (pr_low, pr_high) = band["spo2"], band["pr"]
        return spo2_low, spo2_high, pr_low, pr_high

    def _observe_limits(self, r: Reading, *, valid: bool) -> bool:
        changed = False
        t = r.t
        for rule in self.limits:
            try:
                if rule.observe(t, getattr(r, rule.param), valid=valid):
                    changed = True
            except Exception as exc:  # noqa: BLE001
                self._broken(rule, exc)
        return changed

    def _observe_signal(self, r: Reading, flags: int) -> bool:
        """`sensor_off` and `signal_poor` from an oximeter reading's flags and values."""
        # Frames that keep saying "no value" (dashes, 127/511) mean no finger even when the
        # device sets no flag: the device is connected, the sensor is not on a patient. A
        # pulse rate without SpO2 is no SpO2 monitoring either (DESIGN §5).
        off, poor = self.sensor_off, self.signal_poor
        off.device = poor.device = r.device
        changed = False
        broken = self.out_of_service
        if off not in broken:
            try:
                changed = off.observe(r.t, bool(flags & _PROBE_OFF) or r.spo2 is None)
            except Exception as exc:  # noqa: BLE001
                self._broken(off, exc)
        if poor not in broken:
            try:
                if poor.observe(r.t, bool(flags & POOR_SIGNAL)):
                    changed = True
            except Exception as exc:  # noqa: BLE001
                self._broken(poor, exc)
        return changed

    def _on_bp(self, r: Reading) -> list[Event]:
        self._stale()  # a few readings an hour: the full path
        t, sys, dia = r.t, r.sys, r.dia
        error, observe = self.nibp_error, self._observe
        if sys is None or dia is None or r.flags & _INVALID_FOR_ALARMS:
            # A measurement that produced no values: it failed.
            observe(error, lambda: error.failed(self.phase))
            return self._transitions(t)
        observe(error, error.measured)
        overdue, low, high = self.nibp_overdue, self.bp_low, self.bp_high
        observe(overdue, lambda: overdue.measured(t))
        observe(low, lambda: low.observe(t, sys, valid=True))
        observe(high, lambda: high.observe(t, sys, dia))
        if self.dosed:
            baseline = self.baseline.bp()
            if baseline is not None:
                rise = self.bp_rise
                observe(rise, lambda: rise.observe(t, sys, dia, baseline=baseline))
        elif self.phase is Phase.BASELINE:
            self.baseline.add_bp(sys, dia)
            so_far = self.baseline.bp()
            if so_far is not None:
                gate = self.dose_gate
                observe(gate, lambda: gate.observe(t, so_far))
        return self._transitions(t)

    def device_status(self, t: float, device: str, *, connected: bool) -> list[Event]:
        """A link's state; only the BP module's counts (oximeters are lost by silence)."""
        self._stale()
        rule = self.nibp_lost.get(device)
        if rule is None:
            return []
        rule.observe(t, violating=not connected)
        return self._transitions(t)

    def nibp_failed(self, t: float) -> list[Event]:
        """The BP link reports a failed measurement (an error reply, no result in time)."""
        self._stale()
        self.nibp_error.failed(self.phase)
        return self._transitions(t)

    # What each id shows ---------------------------------------------------------------------

    def _transitions(self, t: float, *, restored: bool = False) -> list[Event]:
        out: list[Event] = []
        for alarm_id, rules in self._by_id.items():
            shown: Display | None = None
            device: str | None = None
            # Several rules may share an id (one silence rule per device): the most urgent
            # wins, and an active one over a latched one of the same priority.
            failed = False
            for rule in rules:
                try:
                    display = rule.display()
                except Exception as exc:  # noqa: BLE001
                    self._broken(rule, exc)
                    failed = True
                    continue
                if display is not None and (
                    shown is None
                    or (display.priority, display.state is AlarmState.ACTIVE)
                    > (shown.priority, shown.state is AlarmState.ACTIVE)
                ):
                    shown, device = display, rule.device
            before = self._showing.get(alarm_id)
            if failed and shown is None:
                continue  # what a broken rule showed stays shown: never a silent clear
            if shown is None:
                after = None
            elif alarm_id in self._escalated:
                after = (Priority.HIGH, shown.state)
            else:
                after = (shown.priority, shown.state)
            if after == before and not restored:
                continue
            self._showing[alarm_id] = after
            self._signal(t, alarm_id, before if not restored else after, after, out)
            if after is None:
                if before is None:
                    continue  # nothing was shown, nothing to restore
                out.append(
                    AlarmTransition(
                        t=t,
                        alarm_id=alarm_id,
                        priority=before[0],
                        state=AlarmState.CLEARED,
                        phase=self.phase,
                        device=self._devices.pop(alarm_id, None),
                    )
                )
                continue
            assert shown is not None
            if device is not None:
                self._devices[alarm_id] = device
            out.append(
                AlarmTransition(
                    t=t,
                    alarm_id=alarm_id,
                    priority=after[0],
                    state=after[1],
                    phase=self.phase,
                    value=shown.value,
                    limit=shown.limit if shown.value is not None else None,
                    device=device,
                    restored=restored,
                    acknowledged=alarm_id in self.acknowledged,
                )
            )
        # A rule out of service may raise again from `display`: keep the full path then.
        self._settled = not self.out_of_service
        return out

    def _signal(
        self, t: float, alarm_id: str, before: Shown | None, after: Shown | None, out: list[Event]
    ) -> None:
        """Acknowledgement, escalation and pause follow what an id shows."""
        if after is None:
            self.acknowledged.discard(alarm_id)
            self._escalated.discard(alarm_id)
            self._escalate_due.pop(alarm_id, None)
            return
        priority, state = after
        # A new occurrence, a higher priority, or a latch whose condition came back.
        raised = (
            before is None
            or priority > before[0]
            or (before[1] is AlarmState.LATCHED and state is AlarmState.ACTIVE)
        )
        if raised:
            # A new occurrence, or a higher priority, sounds again.
            self.acknowledged.discard(alarm_id)
        escalate_s = self._escalate_after.get(alarm_id)
        if (
            escalate_s is not None
            and after == (Priority.MEDIUM, AlarmState.ACTIVE)
            and alarm_id not in self.acknowledged
            and alarm_id not in self._escalate_due
        ):
            due = self._escalate_due[alarm_id] = t + escalate_s
            # A new deadline: the bounds must stay below it.
            self._due, self._due_rest = min(self._due, due), min(self._due_rest, due)
        elif after != (Priority.MEDIUM, AlarmState.ACTIVE):
            self._escalate_due.pop(alarm_id, None)
        if (
            raised
            and priority is Priority.HIGH
            and state is AlarmState.ACTIVE
            and self.paused_until is not None
            and self.config.audio.high_ends_pause
        ):
            self.paused_until = None
            out.append(AudioPause(t=t, paused=False, reason=f"high alarm {alarm_id}"))
