"""The alarm engine against the old one it replaced (`tests/reference_engine`), on random streams.

The engine skips work a reading cannot need (idle rules, deadlines not reached, an unchanged
display); that must never change an alarm. Both engines get the same oximeter streams (60 Hz to
one every few seconds, gaps, sensor-off and artifact frames, values around every limit), BP
readings and failures, acknowledgements, audio pauses, phase changes, doses, infusions, session
ends, reported faults, restarts and restores. Every call must return equal events (time, id,
priority, state, value, limit, device, acknowledged ...), and both must show the same alarms
after it. Kept until the old path is gone.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessiond.config import Config, LimitLevel
from sessiond.model import (
    AlarmState,
    BaselineCaptured,
    DeviceStatus,
    Phase,
    Priority,
    Quality,
    Reading,
    Route,
)
from sessiond.session.alarms import AlarmEngine, RestoredAlarm
from sessiond.session.commands import CommandRejected
from sessiond.session.monitor import Monitor
from tests.reference_engine.alarms import AlarmEngine as ReferenceEngine
from tests.reference_engine.alarms import RestoredAlarm as ReferenceRestored

if TYPE_CHECKING:
    from collections.abc import Callable

    from sessiond.model import Event

IDS = (
    "spo2_low", "pr_high", "pr_low", "sensor_off", "signal_poor", "device_lost", "bp_high",
    "bp_low", "bp_rise", "dose_gate", "nibp_error", "nibp_overdue", "monitor_fault",
    "record_fault", "console_unwatched",
)  # fmt: skip
REPORTED = ("monitor_fault", "record_fault", "console_unwatched")


def _configs() -> list[Config]:
    base = Config()
    a = base.alarms
    # Short delays, latched mediums, escalation, a short freeze: more transitions per minute.
    busy = replace(
        a,
        spo2_low=replace(
            a.spo2_low,
            escalate_after_s=20.0,
            freeze_max_s=4.0,
            medium=LimitLevel(limit=92, delay_s=3),
        ),
        pr_high=replace(
            a.pr_high, escalate_after_s=15.0, medium=LimitLevel(limit=100, delay_s=2, latched=True)
        ),
        pr_low=replace(a.pr_low, escalate_after_s=30.0, medium=LimitLevel(limit=55, delay_s=1)),
        bp_low=replace(a.bp_low, escalate_after_s=60.0),
        device_lost=replace(
            a.device_lost,
            medium_after_s=0.5,
            high_after_s=2.0,
            high_phases=(Phase.BASELINE, Phase.ONSET),
        ),
        signal_poor=replace(a.signal_poor, delay_s=2.0),
        sensor_off=replace(a.sensor_off, delay_s=0.0),
        audio=replace(a.audio, pause_s=15.0, high_ends_pause=False),
    )
    # Rules switched off, single levels, no hysteresis, no clear delay.
    sparse = replace(
        a,
        spo2_low=replace(a.spo2_low, medium=None, hysteresis=0.0, clear_delay_s=0.0),
        pr_high=replace(a.pr_high, enabled=False),
        pr_low=replace(a.pr_low, high=None, escalate_after_s=5.0),
        sensor_off=replace(a.sensor_off, enabled=False),
        device_lost=replace(a.device_lost, enabled=False),
        bp_rise=replace(a.bp_rise, enabled=False),
        nibp_overdue=replace(a.nibp_overdue, grace_min=0.0),
    )
    return [
        base,
        base.model_copy(update={"alarms": busy}),
        base.model_copy(update={"alarms": sparse}),
    ]


CONFIGS = _configs()

SPO2 = [None, 70, 80, 84, 85, 86, 88, 89, 90, 91, 92, 93, 95, 97, 97, 97, 99]
PR = [None, 30, 38, 40, 41, 42, 49, 50, 51, 52, 54, 55, 58, 72, 72, 72, 99, 100, 101, 103,
      119, 120, 121, 122, 139, 140, 141, 142, 160]  # fmt: skip
FLAGS = [Quality.NONE] * 6 + [
    Quality.SENSOR_OFF, Quality.NO_SENSOR, Quality.SEARCHING, Quality.ARTIFACT,
    Quality.LOW_PERFUSION, Quality.LOW_SIGNAL, Quality.ARTIFACT | Quality.LOW_SIGNAL,
]  # fmt: skip
PERIODS = [1 / 60, 1 / 60, 1 / 3, 0.5, 1.0, 1.0, 2.0, 4.9, 5.0, 5.1, 7.0]
GAPS = [0.0, 0.0, 0.01, 0.5, 1.0, 3.0, 5.0, 10.0, 29.9, 30.0, 60.0, 200.0, 700.0, 1300.0]
SYS = [None, 75, 79, 80, 85, 89, 90, 95, 120, 124, 139, 141, 155, 160, 165, 179, 180, 185,
       199, 200, 210]  # fmt: skip
DIA = [None, 50, 60, 78, 89, 90, 91, 95, 99, 100, 105, 109, 110, 115, 119, 120, 125]

values = st.tuples(st.sampled_from(SPO2), st.sampled_from(PR), st.sampled_from(FLAGS))
#: A stretch of readings from one oximeter: how many, how often, their values, and a value
#: that flickers in every so often; `advance` is called before each reading or not at all.
stream_op = st.tuples(
    st.just("stream"), st.sampled_from(GAPS), st.integers(0, 1), st.integers(1, 120),
    st.sampled_from(PERIODS), values, st.one_of(st.none(), st.tuples(st.integers(2, 9), values)),
    st.booleans(),
)  # fmt: skip
gap = st.sampled_from(GAPS)
other_op = st.one_of(
    st.tuples(st.just("advance"), gap),
    st.tuples(
        st.just("bp"),
        gap,
        st.sampled_from(SYS),
        st.sampled_from(DIA),
        st.sampled_from([Quality.NONE, Quality.NONE, Quality.ARTIFACT]),
    ),
    st.tuples(st.just("ack"), gap, st.sampled_from(IDS)),
    st.tuples(st.just("pause"), gap),
    st.tuples(st.just("phase"), gap, st.sampled_from(list(Phase))),
    st.tuples(st.just("dose"), gap),
    st.tuples(st.just("infusion"), gap, st.booleans()),
    st.tuples(st.just("start"), gap),
    st.tuples(st.just("end"), gap),
    st.tuples(st.just("report"), gap, st.sampled_from(REPORTED), st.booleans()),
    st.tuples(st.just("status"), gap, st.booleans()),
    st.tuples(st.just("nibp_failed"), gap),
    st.tuples(st.just("restart"), gap),
    st.tuples(st.just("next_due"), gap),
)
ops = st.lists(st.one_of(stream_op, stream_op, other_op), min_size=3, max_size=40)
restored = st.tuples(
    st.sampled_from(IDS), st.sampled_from(list(Priority)),
    st.sampled_from([AlarmState.ACTIVE, AlarmState.LATCHED]), st.booleans(),
    st.sampled_from([None, "spo2", "spo2b", "nibp"]), st.sampled_from([None, 84.0, 130.0]),
    st.sampled_from([None, 85.0, 120.0]),
)  # fmt: skip
resume = st.one_of(
    st.none(),
    st.tuples(
        st.sampled_from([10.0, 600.0, 5000.0]),
        st.booleans(),
        st.lists(st.tuples(st.sampled_from(SYS[1:]), st.sampled_from(DIA[1:])), max_size=3),
        st.sampled_from(list(Phase)),
        st.lists(restored, max_size=4),
        st.sampled_from([None, 5.0, 100.0]),
    ),
)


@dataclass
class Pair:
    """The new engine and the old one, driven alike and compared after every call."""

    new: AlarmEngine
    old: ReferenceEngine
    t: float = 0.0
    calls: int = 0

    @classmethod
    def build(cls, config: Config, *, oximeters: int, nibp: bool, start: float) -> Pair:
        kw: dict[str, Any] = {
            "config": config.alarms,
            "streaming": ["spo2", "spo2b"][:oximeters],
            "nibp": ["nibp"] if nibp else [],
            "start": start,
            "schedule": config.nibp,
            "baseline": config.baseline,
        }
        return cls(new=AlarmEngine(**kw), old=ReferenceEngine(**kw), t=start)

    def call(self, name: str, *args: Any, **kw: Any) -> Any:
        got, want = getattr(self.new, name)(*args, **kw), getattr(self.old, name)(*args, **kw)
        assert got == want, f"{name}{args} at t={self.t} (call {self.calls})"
        self.calls += 1
        new, old = self.new, self.old
        for alarm_id in IDS:
            assert new.showing(alarm_id) == old.showing(alarm_id), f"{alarm_id} after {name}"
        assert (new.acknowledged, new.paused_until, new.dose_gate_closed) == (
            old.acknowledged, old.paused_until, old.dose_gate_closed)  # fmt: skip
        return got

    def restore(self, now: float, alarms: list[tuple[Any, ...]]) -> None:
        fields = ("alarm_id", "priority", "state", "acknowledged", "device", "value", "limit")
        new = [RestoredAlarm(**dict(zip(fields, a, strict=True))) for a in alarms]
        old = [ReferenceRestored(**dict(zip(fields, a, strict=True))) for a in alarms]
        got, want = self.new.restore(now, new), self.old.restore(now, old)
        assert got == want

    def resume(self, spec: tuple[Any, ...]) -> None:
        """What `Monitor.resume` does to the engine after a restart."""
        now, dosed, bp, phase, alarms, pause = spec
        self.t = now
        self.call("start", 0.0)
        self.call("restart", now)
        if dosed:
            self.call("resume", BaselineCaptured(t=1.0, sys=124.0, dia=80.0, spo2=97.0, pr=70.0))
        self.call("restore_bp", [(1.0 + k, s, d) for k, (s, d) in enumerate(bp)])
        self.new.nibp_overdue.not_before = self.old.nibp_overdue.not_before = now
        self.call("set_phase", now, phase)
        self.restore(now, alarms)
        if pause is not None:
            self.call("restore_pause", now, now + pause)

    def stream(self, op: tuple[Any, ...]) -> None:
        _, _, device, n, period, (spo2, pr, flags), flicker, advance_first = op
        name = ("spo2", "spo2b")[device]
        every = flicker[0] if flicker else 0
        for k in range(n):
            if k:
                self.t += period
            if every and k % every == every - 1:
                assert flicker is not None
                spo2, pr, flags = flicker[1]
            elif every:
                spo2, pr, flags = op[5]
            if advance_first:
                self.call("advance", self.t)
            self.call("on_reading", Reading(t=self.t, device=name, spo2=spo2, pr=pr, flags=flags))

    def run(self, op: tuple[Any, ...]) -> None:
        kind, gap = op[0], op[1]
        self.t += gap
        t = self.t
        if kind == "stream":
            self.stream(op)
        elif kind == "bp":
            _, _, sys, dia, flags = op
            self.call("advance", t)
            self.call("on_reading", Reading(t=t, device="nibp", sys=sys, dia=dia, flags=flags))
        elif kind == "next_due":
            self.call("next_due")
        elif kind in ("advance", "pause", "dose", "start", "end", "nibp_failed", "restart"):
            method = {"end": "end_session", "nibp_failed": "nibp_failed"}.get(kind, kind)
            self.call(method, t)
        elif kind == "ack":
            self.call("acknowledge", t, op[2])
        elif kind == "phase":
            self.call("set_phase", t, op[2])
        elif kind == "infusion":
            self.call("set_infusion", t, infusing=op[2])
        elif kind == "report":
            self.call("report", t, op[2], active=op[3])
        elif kind == "status":
            self.call("device_status", t, "nibp", connected=op[2])
        else:  # pragma: no cover
            raise AssertionError(kind)


def run_pair(pair: Pair, script: list[tuple[Any, ...]]) -> None:
    for op in script:
        pair.run(op)
    # Whatever is still due fires alike, and the next deadline is the same.
    pair.call("advance", pair.t + 3600.0)
    pair.call("next_due")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=st.sampled_from(range(len(CONFIGS))),
    oximeters=st.integers(1, 2),
    nibp=st.booleans(),
    start=st.sampled_from([0.0, 2.0]),
    prelude=resume,
    script=ops,
)
def test_the_engine_gives_the_old_engines_alarms(  # noqa: PLR0917 - drawn by hypothesis
    config, oximeters, nibp, start, prelude, script
):
    """Random streams and actions: the same events from every call, the same alarms shown."""
    pair = Pair.build(CONFIGS[config], oximeters=oximeters, nibp=nibp, start=start)
    if prelude is not None:
        pair.resume(prelude)
    else:
        pair.call("start", start)
    run_pair(pair, script)


@pytest.mark.parametrize("seed", range(40))
def test_long_sessions_give_the_old_engines_alarms(seed):
    """Longer seeded sessions (a few thousand readings each) than hypothesis draws."""
    rng = random.Random(seed)
    pair = Pair.build(CONFIGS[seed % len(CONFIGS)], oximeters=1 + seed % 2, nibp=True, start=0.0)
    pair.call("start", 0.0)
    pair.call("set_phase", 0.0, Phase.BASELINE)
    run_pair(pair, seeded_script(rng, 60))
    assert pair.calls > 1000


#: A rule method that raises: the rule is taken out of service and `monitor_fault` shown.
FAULTS = [
    (rule, method)
    for rule in ("spo2_low", "pr_high", "sensor_off", "signal_poor", "bp_low", "bp_high",
                 "nibp_overdue")
    for method in ("observe", "advance", "display")
    if (rule, method) != ("nibp_overdue", "observe")
]  # fmt: skip


@pytest.mark.parametrize(("rule", "method"), FAULTS)
def test_a_rule_that_raises_is_taken_out_alike(rule, method):
    """A fault in a rule: the same faults logged, the same `monitor_fault` and other alarms
    (a rule whose `display` keeps raising keeps the engine on its full path)."""
    rng = random.Random(f"{rule}.{method}")
    pair = Pair.build(CONFIGS[1], oximeters=1, nibp=True, start=0.0)
    pair.call("start", 0.0)
    pair.call("set_phase", 0.0, Phase.BASELINE)

    def fail(*_args: object, **_kw: object) -> Any:
        msg = f"{rule}.{method}"
        raise RuntimeError(msg)

    for k, op in enumerate(seeded_script(rng, 20)):
        if k == 4:
            setattr(getattr(pair.new, rule), method, fail)
            setattr(getattr(pair.old, rule), method, fail)
        pair.run(op)
        faults = [[(part, str(exc)) for part, exc in eng.faults] for eng in (pair.new, pair.old)]
        assert faults[0] == faults[1]
    pair.call("advance", pair.t + 3600.0)


def seeded_script(rng: random.Random, n: int) -> list[tuple[Any, ...]]:
    """`n` operations, streams of 20-400 readings for most."""
    script: list[tuple[Any, ...]] = []
    for _ in range(n):
        if rng.random() < 0.6:
            vals = (rng.choice(SPO2), rng.choice(PR), rng.choice(FLAGS))
            alt = (rng.randint(2, 9), (rng.choice(SPO2), rng.choice(PR), rng.choice(FLAGS)))
            script.append(("stream", rng.choice(GAPS[:8]), rng.randint(0, 1),
                           rng.randint(20, 400), rng.choice(PERIODS), vals,
                           alt if rng.random() < 0.3 else None, rng.random() < 0.9))  # fmt: skip
        else:
            script.append(_other(rng))
    return script


def _other(rng: random.Random) -> tuple[Any, ...]:
    gap_s = rng.choice(GAPS)
    return rng.choice(
        [
            ("advance", gap_s),
            ("bp", gap_s, rng.choice(SYS), rng.choice(DIA), Quality.NONE),
            ("ack", gap_s, rng.choice(IDS)),
            ("pause", gap_s),
            ("phase", gap_s, rng.choice(list(Phase))),
            ("dose", gap_s),
            ("infusion", gap_s, rng.random() < 0.5),
            ("end", gap_s),
            ("start", gap_s),
            ("report", gap_s, rng.choice(REPORTED), rng.random() < 0.5),
            ("status", gap_s, rng.random() < 0.7),
            ("nibp_failed", gap_s),
            ("restart", gap_s),
            ("next_due", gap_s),
        ]
    )


def test_a_change_made_between_readings_is_shown_at_the_next_reading():
    """A new session's start resets `nibp_overdue` without a transition of its own; both
    engines clear it at the next reading, the one that finds nothing else changed."""
    pair = Pair.build(CONFIGS[0], oximeters=1, nibp=True, start=0.0)
    pair.call("start", 0.0)
    pair.call("set_phase", 0.0, Phase.ONSET)
    pair.run(("stream", 0.0, 0, 1100, 1.0, (97, 72, Quality.NONE), None, True))
    assert pair.new.showing("nibp_overdue") == (Priority.MEDIUM, AlarmState.ACTIVE)
    pair.call("start", pair.t)
    assert pair.new.showing("nibp_overdue") is not None  # not yet: no transition was made
    pair.t += 1.0
    out = pair.call("on_reading", Reading(t=pair.t, device="spo2", spo2=97, pr=72))
    assert [(e.alarm_id, e.state) for e in out] == [("nibp_overdue", AlarmState.CLEARED)]


# --- the whole monitor, with either engine inside -----------------------------------------


class _Reference(ReferenceEngine):
    """The old engine in the monitor: it knows only its exact next deadline, which serves as
    `due_by`, and any reading may move it (`moves` is new at every look)."""

    def __init__(self, config: Config) -> None:
        super().__init__(config=config.alarms, streaming=["spo2"], nibp=["nibp"],
                         schedule=config.nibp, baseline=config.baseline)  # fmt: skip
        self._looks = itertools.count()

    def due_by(self, _now: float) -> float:
        return self.next_due()

    @property
    def moves(self) -> int:
        return next(self._looks)


def monitor(config: Config, *, reference: bool) -> Monitor:
    m = Monitor(config=config, streaming=["spo2"], nibp=["nibp"])
    if reference:
        m.alarms = _Reference(config)  # type: ignore[assignment]
    return m


USER: dict[str, Any] = {"user": "ana", "source": "test"}
#: Monitor calls by name: what the daemon does on a command, a BP link event or a reading.
COMMANDS: dict[str, Callable[[Monitor, tuple[Any, ...], float], list[Event]]] = {
    "bp": lambda m, op, t: m.on_reading(Reading(t=t, device="nibp", sys=op[1], dia=op[2])),
    "start": lambda m, _, t: m.start_session(t, session_id="s", route=Route.IV, **USER),
    "dose": lambda m, _, t: m.mark_dose(t, reason="test", **USER),
    "infusion": lambda m, _, t: m.start_infusion(
        t, amount=None, unit=None, planned_min=None, reason="test", **USER
    ),
    "infusion_pause": lambda m, _, t: m.pause_infusion(t, reason="surge", **USER),
    "infusion_resume": lambda m, _, t: m.resume_infusion(t, reason="settled", **USER),
    "infusion_stop": lambda m, _, t: m.stop_infusion(t, amount=None, unit=None, **USER),
    "end": lambda m, _, t: m.end_session(t, **USER),
    "ack": lambda m, op, t: m.acknowledge(t, alarm_id=op[1], **USER),
    "pause": lambda m, _, t: m.pause_audio(t, **USER),
    "status": lambda m, op, t: m.device_status(DeviceStatus(t=t, device="nibp", connected=op[1])),
    "nibp_failed": lambda m, _, t: m.nibp_failed(t),
    "report": lambda m, op, t: m.report(t, "record_fault", active=op[1]),
    "reading": lambda m, op, t: m.on_reading(
        Reading(t=t, device="spo2", spo2=op[1], pr=op[2], flags=op[3])
    ),
}


def act(m: Monitor, op: tuple[Any, ...], t: float) -> Any:
    """`advance(t)` then one monitor call, as the daemon makes them; a refused command is
    compared by its message."""
    try:
        return m.advance(t) + COMMANDS[op[0]](m, op, t)
    except CommandRejected as exc:
        return ("rejected", str(exc))


monitor_op = st.one_of(
    st.tuples(
        st.just("reading"), st.sampled_from(SPO2), st.sampled_from(PR), st.sampled_from(FLAGS)
    ),
    st.tuples(st.just("bp"), st.sampled_from(SYS[1:]), st.sampled_from(DIA[1:])),
    st.tuples(
        st.sampled_from(
            [
                "start",
                "dose",
                "infusion",
                "infusion_pause",
                "infusion_resume",
                "infusion_stop",
                "end",
                "pause",
                "nibp_failed",
            ]
        )
    ),
    st.tuples(st.just("ack"), st.sampled_from(IDS)),
    st.tuples(st.just("status"), st.booleans()),
    st.tuples(st.just("report"), st.booleans()),
)
#: Each step: the time since the last one, and how many times it repeats (a stream).
monitor_script = st.lists(
    st.tuples(
        st.sampled_from([0.0, 1 / 60, 0.5, 1.0, 1.0, 6.0, 40.0, 400.0]),
        st.integers(1, 60),
        monitor_op,
    ),
    max_size=40,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=st.sampled_from(range(len(CONFIGS))), script=monitor_script)
def test_the_monitor_gives_the_same_events_with_either_engine(config, script):
    """Through the monitor (timeline, BP schedule, discharge, infusion prompt) too."""
    new, old = monitor(CONFIGS[config], reference=False), monitor(CONFIGS[config], reference=True)
    t = 0.0
    for step, repeat, op in script:
        for _ in range(repeat if op[0] == "reading" else 1):
            t += step
            assert act(new, op, t) == act(old, op, t), f"{op} at t={t}"
    assert new.advance(t + 7200.0) == old.advance(t + 7200.0)
    assert new.next_due() == old.next_due()
