"""The session's settings: alarms, timeline, BP schedule, baseline, discharge and checklists.

What the monitor runs on, with the defaults that ship (`config/sessiond.toml` documents each
with its unit and clinical source). Plain frozen dataclasses that check themselves
(`sessiond.checked`): `sessiond replay` and the monitor load them without pydantic, and
`sessiond.config` validates them from a file (`[alarms]`, `[timeline]`, `[nibp]`,
`[baseline]`, `[discharge]`, `[checklists]`) like every other part's settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple, Protocol

from sessiond.checked import Checked, Constraint, FieldCheck, Problems, settings
from sessiond.errors import KeyProblems
from sessiond.model import Phase, Priority, Route

if TYPE_CHECKING:
    from collections.abc import Mapping

#: An alarm delay (or clear delay): beyond 2 min an alarm is as good as off (SpO2 monitors
#: offer up to 30 s; clinical.md §3).
AlarmDelay = Annotated[float, Constraint(ge=0, le=120)]
#: A BP limit or threshold (mmHg): outside what an NIBP module measures is a typo.
Mmhg = Annotated[float, Constraint(ge=40, le=300)]
#: BP hysteresis (mmHg): DESIGN §5 uses 5; a wide one keeps an alarm from ever clearing.
MmhgHysteresis = Annotated[float, Constraint(ge=0, le=20)]
#: A duration of the session (phases, intervals); a day is longer than any session.
Minutes = Annotated[float, Constraint(gt=0, le=24 * 60)]
PriorityLabel = Literal["low", "medium", "high"]


@settings
class LimitLevel(Checked):
    """One priority level of a limit alarm: beyond `limit` for `delay_s` raises it."""

    limit: float
    delay_s: AlarmDelay = 0.0
    latched: bool = False


class Scale(NamedTuple):
    """The sane range of one value's limits and hysteresis, in its unit (DESIGN §5)."""

    unit: str
    low: float
    high: float
    max_hysteresis: float


SPO2_SCALE = Scale("%", 50, 100, 5)
PR_SCALE = Scale("bpm", 20, 250, 10)
SYS_SCALE = Scale("mmHg", 40, 300, 20)


def _got(value: float) -> str:
    return f"got {value:g}"


def _above(obj: object, key: str, other: str, *, or_equal: bool = False) -> Problems:
    """`key` of `obj` must be above `other` (or equal): a worse level needs a worse value."""
    value, bound = getattr(obj, key), getattr(obj, other)
    if value > bound or (or_equal and value == bound):
        return []
    relation = "at least" if or_equal else "above"
    return [(key, f"must be {relation} {other} ({bound:g}) ({_got(value)})")]


@settings
class LimitAlarmConfig(Checked):
    """A physiological limit alarm with up to two levels (medium, high)."""

    enabled: bool = True
    medium: LimitLevel | None = None
    high: LimitLevel | None = None
    #: Back inside the limit by at least this much (the value's unit) before clearing.
    hysteresis: Annotated[float, Constraint(ge=0)] = 0.0
    clear_delay_s: AlarmDelay = 5.0
    #: A delay frozen by invalid or missing data this long starts again (PRD: artifact
    #: suspension ≤ 30 s, clinical.md §4.4).
    freeze_max_s: AlarmDelay = 30.0
    #: An unacknowledged medium alarm still active this long (s, at most 10 min) becomes
    #: high; None: never.
    escalate_after_s: Annotated[float, Constraint(gt=0, le=600)] | None = None

    def limit_problems(self, scale: Scale, *, below: bool) -> Problems:
        """What is wrong with these limits for a value on `scale` that alarms `below` them."""
        unit = scale.unit
        found = [
            (
                f"{name}.limit",
                f"must be within {scale.low:g}-{scale.high:g} {unit} ({_got(level.limit)})",
            )
            for name, level in (("medium", self.medium), ("high", self.high))
            if level is not None and not scale.low <= level.limit <= scale.high
        ]
        if self.hysteresis > scale.max_hysteresis:
            problem = f"must be at most {scale.max_hysteresis:g} {unit} ({_got(self.hysteresis)})"
            found.append(("hysteresis", problem))
        # The high level is the worse value: further below (or above) than the medium one.
        medium, high = self.medium, self.high
        if found or medium is None or high is None:
            return found
        if not (high.limit < medium.limit if below else high.limit > medium.limit):
            side, value = ("below", "low") if below else ("above", "high")
            problem = (
                f"must be {side} medium.limit ({medium.limit:g}) for an alarm on a {value} "
                f"value ({_got(high.limit)})"
            )
            found.append(("high.limit", problem))
        return found


def _on_scale(scale: Scale, *, below: bool) -> FieldCheck:
    """The limit alarm's limits are sane for a value on `scale` alarming `below` them."""

    def check(alarm: LimitAlarmConfig, _: Mapping[str, Any]) -> None:
        found = alarm.limit_problems(scale, below=below)
        if found:
            raise KeyProblems(found)

    return FieldCheck(check)


@settings
class TechnicalAlarmConfig(Checked):
    """A technical condition that raises after `delay_s` and clears as soon as it is gone."""

    enabled: bool = True
    priority: PriorityLabel = "medium"
    delay_s: AlarmDelay = 5.0

    @property
    def level(self) -> Priority:
        return Priority.from_label(self.priority)


@settings
class DeviceLostConfig(Checked):
    """`device_lost`: an oximeter silent this long (medium, then high in `high_phases`)."""

    enabled: bool = True
    medium_after_s: AlarmDelay = 5.0
    high_after_s: AlarmDelay = 30.0
    high_phases: tuple[Phase, ...] = (Phase.ONSET, Phase.EFFECT)
    high_latched: bool = True

    def problems(self) -> Problems:
        return _above(self, "high_after_s", "medium_after_s", or_equal=True)


@settings
class BpHighConfig(Checked):
    """`bp_high`: per BP reading; medium at once, high when confirmed (DESIGN §5)."""

    enabled: bool = True
    medium_sys_mmhg: Mmhg = 160.0
    medium_dia_mmhg: Mmhg = 100.0
    high_sys_mmhg: Mmhg = 180.0
    high_dia_mmhg: Mmhg = 110.0
    #: Consecutive readings at or above the high limits that raise high.
    high_confirmations: Annotated[int, Constraint(ge=1, le=5)] = 2
    #: One reading at or above these raises high at once.
    critical_sys_mmhg: Mmhg = 200.0
    critical_dia_mmhg: Mmhg = 120.0
    high_latched: bool = True
    hysteresis_mmhg: MmhgHysteresis = 5.0
    #: The value back inside the limit with hysteresis this long before the condition
    #: clears (DESIGN §5).
    clear_delay_s: AlarmDelay = 5.0

    def problems(self) -> Problems:
        return (
            _above(self, "high_sys_mmhg", "medium_sys_mmhg")
            + _above(self, "high_dia_mmhg", "medium_dia_mmhg")
            + _above(self, "critical_sys_mmhg", "high_sys_mmhg", or_equal=True)
            + _above(self, "critical_dia_mmhg", "high_dia_mmhg", or_equal=True)
        )


@settings
class BpRiseConfig(Checked):
    """`bp_rise`: after the dose, a rise from the pre-dose baseline."""

    enabled: bool = True
    priority: PriorityLabel = "medium"
    sys_rise_mmhg: Annotated[float, Constraint(gt=0, le=100)] = 40.0
    dia_rise_mmhg: Annotated[float, Constraint(gt=0, le=100)] = 25.0
    hysteresis_mmhg: MmhgHysteresis = 5.0
    #: The value back inside the limit with hysteresis this long before the condition
    #: clears (DESIGN §5).
    clear_delay_s: AlarmDelay = 5.0

    @property
    def level(self) -> Priority:
        return Priority.from_label(self.priority)


@settings
class DoseGateConfig(Checked):
    """`dose_gate`: before the dose, on the baseline so far."""

    enabled: bool = True
    #: Above these (strictly) → low: prescriber review.
    low_sys_mmhg: Mmhg = 140.0
    low_dia_mmhg: Mmhg = 90.0
    #: At or above these → high: dosing needs an override with a reason.
    high_sys_mmhg: Mmhg = 180.0
    high_dia_mmhg: Mmhg = 110.0
    hysteresis_mmhg: MmhgHysteresis = 5.0
    #: The value back inside the limit with hysteresis this long before the condition
    #: clears (DESIGN §5).
    clear_delay_s: AlarmDelay = 5.0

    def problems(self) -> Problems:
        return _above(self, "high_sys_mmhg", "low_sys_mmhg") + _above(
            self, "high_dia_mmhg", "low_dia_mmhg"
        )


@settings
class NibpErrorConfig(Checked):
    """`nibp_error`: a failed BP measurement; repeated failures in critical phases escalate."""

    enabled: bool = True
    priority: PriorityLabel = "low"
    escalate_after_failures: Annotated[int, Constraint(ge=1, le=5)] = 2
    escalated_priority: PriorityLabel = "medium"
    escalate_phases: tuple[Phase, ...] = (Phase.ONSET, Phase.EFFECT)

    def problems(self) -> Problems:
        if Priority.from_label(self.escalated_priority) < Priority.from_label(self.priority):
            problem = f"must not be below priority ({self.priority!r}): escalation never lowers"
            return [("escalated_priority", problem)]
        return []


@settings
class NibpOverdueConfig(Checked):
    """`nibp_overdue`: no valid BP reading for the phase's interval plus a grace period."""

    enabled: bool = True
    priority: PriorityLabel = "medium"
    grace_min: Annotated[float, Constraint(ge=0, le=60)] = 5.0


@settings
class AudioConfig(Checked):
    """Alarm audio: the nurse's global pause."""

    pause_s: Annotated[float, Constraint(gt=0, le=600)] = 120.0
    #: A new high alarm ends a pause early.
    high_ends_pause: bool = True
    #: Real seconds between reminder bursts of an acknowledged alarm whose condition stays
    #: (clinical.md §1.3: 2-3 min); at most 15 min.
    reminder_s: Annotated[float, Constraint(gt=0, le=900)] = 150.0


@settings
class AlarmsConfig(Checked):
    """`[alarms]`: every alarm of DESIGN §5, and the alarm audio."""

    spo2_low: Annotated[LimitAlarmConfig, _on_scale(SPO2_SCALE, below=True)] = LimitAlarmConfig(
        medium=LimitLevel(limit=90.0, delay_s=15.0),
        high=LimitLevel(limit=85.0, delay_s=0.0, latched=True),
        hysteresis=1.0,
    )
    pr_high: Annotated[LimitAlarmConfig, _on_scale(PR_SCALE, below=False)] = LimitAlarmConfig(
        medium=LimitLevel(limit=120.0, delay_s=10.0),
        high=LimitLevel(limit=140.0, delay_s=10.0),
        hysteresis=2.0,
    )
    pr_low: Annotated[LimitAlarmConfig, _on_scale(PR_SCALE, below=True)] = LimitAlarmConfig(
        medium=LimitLevel(limit=50.0, delay_s=10.0),
        high=LimitLevel(limit=40.0, delay_s=5.0, latched=True),
        hysteresis=2.0,
    )
    sensor_off: TechnicalAlarmConfig = TechnicalAlarmConfig(priority="medium", delay_s=5.0)
    signal_poor: TechnicalAlarmConfig = TechnicalAlarmConfig(priority="low", delay_s=30.0)
    device_lost: DeviceLostConfig = DeviceLostConfig()
    bp_high: BpHighConfig = BpHighConfig()
    bp_low: Annotated[LimitAlarmConfig, _on_scale(SYS_SCALE, below=True)] = LimitAlarmConfig(
        medium=LimitLevel(limit=90.0),
        high=LimitLevel(limit=80.0),
        hysteresis=5.0,
        clear_delay_s=5.0,
    )
    bp_rise: BpRiseConfig = BpRiseConfig()
    dose_gate: DoseGateConfig = DoseGateConfig()
    nibp_error: NibpErrorConfig = NibpErrorConfig()
    nibp_overdue: NibpOverdueConfig = NibpOverdueConfig()
    audio: AudioConfig = AudioConfig()


#: A BP schedule interval: longer than an hour leaves a ketamine session unwatched.
BpInterval = Annotated[float, Constraint(gt=0, le=60)]


@settings
class NibpConfig(Checked):
    """`[nibp]`: the BP schedule (DESIGN §5) and the live command timeouts."""

    baseline_interval_min: BpInterval = 5.0
    onset_interval_min: BpInterval = 10.0
    effect_interval_min: BpInterval = 15.0
    recovery_interval_min: BpInterval = 30.0
    #: While an infusion runs (started, not stopped; paused included), after the dose.
    infusion_interval_min: BpInterval = 10.0
    #: Forced readings, minutes after the dose.
    forced_after_dose_min: tuple[Minutes, ...] = (40.0,)
    #: Re-measure at once after a medium or high BP alarm.
    remeasure_on_alarm: bool = True
    #: A command unanswered this long (s, at most 30): the module is lost.
    command_timeout_s: Annotated[float, Constraint(gt=0, le=30)] = 5.0
    #: A measurement with no result this long (s) after it started has failed; an adult
    #: cuff stays inflated at most 180 s (IEC 80601-2-30).
    measurement_timeout_s: Annotated[float, Constraint(gt=0, le=300)] = 150.0

    def interval_s(self, phase: Phase, *, infusion: bool = False) -> float | None:
        """The interval of `phase`; the infusion's while one runs after the dose."""
        if infusion and phase in {Phase.ONSET, Phase.EFFECT, Phase.RECOVERY}:
            return self.infusion_interval_min * 60.0
        minutes = {
            Phase.BASELINE: self.baseline_interval_min,
            Phase.ONSET: self.onset_interval_min,
            Phase.EFFECT: self.effect_interval_min,
            Phase.RECOVERY: self.recovery_interval_min,
        }.get(phase)
        return None if minutes is None else minutes * 60.0


@settings
class BaselineConfig(Checked):
    """`[baseline]`: the pre-dose baseline (DESIGN §5)."""

    #: BP baseline: the mean of the last this many pre-dose readings.
    bp_readings: Annotated[int, Constraint(ge=1, le=10)] = 2
    #: SpO2 and PR baseline: medians of the valid values in this window before the dose.
    window_min: Annotated[float, Constraint(gt=0, le=60)] = 5.0


@settings
class DischargeConfig(Checked):
    """`[discharge]`: readiness (DESIGN §5), shown to the nurse, never acted on by itself."""

    spo2_min_pct: Annotated[float, Constraint(ge=SPO2_SCALE.low, le=SPO2_SCALE.high)] = 92.0
    spo2_window_min: Annotated[float, Constraint(gt=0, le=60)] = 5.0
    #: Wider than ±50 % of the baseline is no check at all.
    within_baseline_pct: Annotated[float, Constraint(gt=0, le=50)] = 20.0


def _after_onset(effect_end_min: float, earlier: Mapping[str, Any]) -> None:
    onset = earlier.get("onset_min")
    if onset is not None and effect_end_min <= onset:
        msg = f"must be after onset_min ({onset})"
        raise ValueError(msg)


@settings
class RouteTimeline(Checked):
    """One route's phases (minutes after the dose) and discharge minimums."""

    onset_min: Minutes = 30.0
    effect_end_min: Annotated[float, Constraint(gt=0, le=24 * 60), FieldCheck(_after_onset)] = 150.0
    #: Discharge readiness needs at least this long since the dose (the route's minimum).
    discharge_after_min: Minutes = 120.0
    #: An infusion still running when the effect window would end holds `effect` until its
    #: stop plus this long.
    infusion_tail_min: Minutes = 90.0
    #: After an infusion, readiness also needs at least this long since its stop.
    discharge_after_stop_min: Minutes = 90.0


@settings
class TimelineConfig(Checked):
    """`[timeline]`: each route's phases (DESIGN §4)."""

    iv: RouteTimeline = RouteTimeline()
    im: RouteTimeline = RouteTimeline()
    intranasal: RouteTimeline = RouteTimeline()
    oral: RouteTimeline = RouteTimeline(
        onset_min=60.0, effect_end_min=240.0, discharge_after_min=240.0
    )

    def for_route(self, route: Route) -> RouteTimeline:
        timeline: RouteTimeline = getattr(self, route.value)
        return timeline


@settings
class ChecklistItem(Checked):
    """One line of a paper checklist, confirmed by a nurse in the console."""

    id: Annotated[str, Constraint(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    text: Annotated[str, Constraint(min_length=1, max_length=200)]


def _unique_ids(items: tuple[ChecklistItem, ...], key: str) -> Problems:
    ids = [item.id for item in items]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    return [(key, f"item ids must be unique ({', '.join(twice)} repeated)")] if twice else []


@settings
class ChecklistsConfig(Checked):
    """`[checklists]`: what a clinic checks on paper before the dose and at discharge."""

    #: Confirmed before the dose; the dose needs every item, or an override with a reason.
    predose: tuple[ChecklistItem, ...] = (
        ChecklistItem(id="fasting_solids", text="No solid food for 6 h"),
        ChecklistItem(id="fasting_liquids", text="No clear liquids for 2 h"),
        ChecklistItem(id="escort", text="Escort home arranged"),
        ChecklistItem(id="consent", text="Consent signed"),
        ChecklistItem(id="medications", text="Medications reviewed"),
        ChecklistItem(id="baseline_bp", text="Baseline BP taken"),
    )
    #: Confirmed with the nurse's sign-off at discharge (time since dose and vitals against
    #: baseline are checked by the daemon's readiness and shown beside them).
    discharge: tuple[ChecklistItem, ...] = (
        ChecklistItem(id="escort_present", text="Escort present"),
        ChecklistItem(id="alert", text="Alert, oriented, walks steadily"),
        ChecklistItem(id="instructions", text="Aftercare instructions given"),
    )

    def problems(self) -> Problems:
        return _unique_ids(self.predose, "predose") + _unique_ids(self.discharge, "discharge")


class SessionConfig(Protocol):
    """What the monitor reads: `sessiond.config.Config`, or `SessionSettings` alone."""

    @property
    def alarms(self) -> AlarmsConfig: ...
    @property
    def timeline(self) -> TimelineConfig: ...
    @property
    def nibp(self) -> NibpConfig: ...
    @property
    def baseline(self) -> BaselineConfig: ...
    @property
    def discharge(self) -> DischargeConfig: ...
    @property
    def checklists(self) -> ChecklistsConfig: ...


@settings
class SessionSettings(Checked):
    """The session's settings without the rest of a configuration (replay's defaults)."""

    alarms: AlarmsConfig = AlarmsConfig()
    timeline: TimelineConfig = TimelineConfig()
    nibp: NibpConfig = NibpConfig()
    baseline: BaselineConfig = BaselineConfig()
    discharge: DischargeConfig = DischargeConfig()
    checklists: ChecklistsConfig = ChecklistsConfig()
