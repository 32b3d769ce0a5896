"""IV infusions (DESIGN §4): the start is the dose; pause, resume and stop; the prompt on a
confirmed critical BP; the BP schedule, effect window and discharge that follow the infusion;
the record and a resume after a crash; replay's `--infusion-end`.

Everything runs on virtual time: a real monitor whose BP module answers each request 30 s
later, and (for the record) the real recorder writing SQLite from the same events.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import sqlite3
import subprocess
import sys
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pytest

from sessiond.bus import Bus
from sessiond.cli import main
from sessiond.clock import VirtualClock
from sessiond.config import Config, ConfigError, NibpConfig, RouteTimeline, TimelineConfig
from sessiond.model import (
    AlarmState,
    DoseUnit,
    Infusion,
    InfusionPrompt,
    NibpRequest,
    NurseAction,
    Phase,
    PhaseChanged,
    Priority,
    Reading,
    Route,
    SessionStarted,
)
from sessiond.records.capture import CaptureReader
from sessiond.records.replay import replay
from sessiond.records.store import Recorder
from sessiond.session.alarms import INF
from sessiond.session.commands import CommandRejected
from sessiond.session.monitor import Monitor
from sessiond.sim.physiology import infusion_rise, simulate_patient
from sessiond.sim.scenario import builtin_scenario, parse_scenario_text
from sessiond.status import RoomStatus
from sessiond.wire import event_json, public_action_json

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from sessiond.model import Event
    from sessiond.session.state import OpenSession

#: Seconds from a BP request to its reading (a cuff cycle).
MEASURE_S = 30.0
USER: dict[str, Any] = {"user": "ana", "source": "test"}
PLAN: dict[str, Any] = {"amount": 0.5, "unit": DoseUnit.MG_PER_KG, "planned_min": 45.0}
CALM = (128, 82)
SURGE = (188, 114)


def new_monitor(config: Config | None = None) -> Monitor:
    """A room with a BP module only: these tests are about BP and time."""
    return Monitor(config=config or Config(), streaming=[], nibp=["nibp"])


class Bedside:
    """A monitor on virtual time whose BP module answers each request `MEASURE_S` later with
    `bp(t)`; with a recorder, every event also goes to the record."""

    def __init__(self, monitor: Monitor, *, bp: Callable[[float], tuple[int, int]]) -> None:
        self.m = monitor
        self.bp = bp
        self.events: list[Event] = []
        self.bus: Bus | None = None
        self.clock: VirtualClock | None = None
        self._answers: list[float] = []

    def take(self, events: list[Event]) -> list[Event]:
        for event in events:
            self.events.append(event)
            if self.bus is not None:
                self.bus.publish(event)
            if isinstance(event, NibpRequest):
                bisect.insort(self._answers, event.t + MEASURE_S)
        return events

    def _at(self, t: float) -> None:
        if self.clock is not None:
            self.clock.t = t
        self.take(self.m.advance(t))

    def run_to(self, end: float) -> None:
        """Time passes to `end`: deadlines fire and the BP module answers when due."""
        while True:
            due = min(self.m.next_due(), self._answers[0] if self._answers else INF)
            if due > end:
                break
            self._at(due)
            while self._answers and self._answers[0] <= due:
                self._answers.pop(0)
                self.reading(due)
        self._at(end)

    def reading(self, t: float) -> None:
        sys_, dia = self.bp(t)
        r = Reading(t=t, device="nibp", sys=sys_, dia=dia, map=(sys_ + 2 * dia) // 3, pr=80)
        self.events.append(r)
        if self.bus is not None:
            self.bus.publish(r)
        self.take(self.m.on_reading(r))

    def act(self, t: float, command: Callable[..., list[Event]], **kw: Any) -> list[Event]:
        """A nurse command at `t`, after everything due before it."""
        self.run_to(t)
        return self.take(command(t, **kw))

    def since(self, t: float, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and e.t >= t]


def prompts(events: list[Event]) -> list[InfusionPrompt]:
    return [e for e in events if isinstance(e, InfusionPrompt)]


def actions(events: list[Event], name: str) -> list[NurseAction]:
    return [e for e in events if isinstance(e, NurseAction) and e.action == name]


class Surge:
    """BP calm, then 188/114 from `start` until `end` (set when the nurse has paused)."""

    def __init__(self, start: float) -> None:
        self.start, self.end = start, INF

    def __call__(self, t: float) -> tuple[int, int]:
        return SURGE if self.start <= t < self.end else CALM


def dose(b: Bedside) -> Bedside:
    """A session started at 0 (two baseline readings), and the infusion started at 600."""
    b.take(b.m.start_session(0.0, session_id="s1", route=Route.IV, **USER))
    b.act(600.0, b.m.start_infusion, **PLAN, **USER)
    return b


def dosed_bedside(
    bp: Callable[[float], tuple[int, int]], monitor: Monitor | None = None
) -> Bedside:
    return dose(Bedside(monitor or new_monitor(), bp=bp))


# ---- the whole story ------------------------------------------------------------------------


def test_a_45_min_infusion_paused_for_a_surge() -> None:
    """The prompt comes with the confirmed high and goes with the pause; q10 while the
    infusion runs, the phase's q15 from its stop; effect keeps the dose's window."""
    surge = Surge(start=1800.0)
    b = dosed_bedside(surge)
    m = b.m
    (dose,) = actions(b.events, "dose")
    (start,) = actions(b.events, "infusion_start")
    assert (dose.t, dose.detail) == (600.0, {"infusion": True})
    assert (start.t, start.user, start.source) == (600.0, "ana", "test")
    assert start.detail == {"planned_amount": 0.5, "unit": "mg/kg", "planned_min": 45.0}
    assert m.alarms.baseline.bp() == (128.0, 82.0)

    b.run_to(2300.0)
    # The first reading of the surge raises bp_high medium and asks again at once; the
    # confirming reading raises it high: the prompt, with both readings.
    first = next(r for r in b.events if isinstance(r, Reading) and r.sys == SURGE[0])
    (prompt,) = prompts(b.events)
    assert prompt.active
    assert prompt.t == first.t + MEASURE_S
    assert [r[0] for r in prompt.readings] == [first.t, first.t + MEASURE_S]
    assert [r[1:] for r in prompt.readings] == [SURGE, SURGE]
    assert m.alarms.showing("bp_high") == (Priority.HIGH, AlarmState.ACTIVE)
    assert event_json(prompt) == {
        "t": prompt.t, "type": "infusion_prompt", "active": True,
        "advice": "pause the infusion / notify the prescriber",
        "readings": [{"t": first.t, "sys": 188, "dia": 114},
                     {"t": first.t + MEASURE_S, "sys": 188, "dia": 114}],
    }  # fmt: skip
    # Acknowledging the alarm's audio is not pausing the infusion: the prompt stays.
    b.act(2300.0, m.acknowledge, alarm_id="bp_high", **USER)
    assert m.prompting

    out = b.act(2340.0, m.pause_infusion, reason="BP 188/114, prescriber called", **USER)
    assert [(p.active, p.reason) for p in prompts(out)] == [(False, "infusion paused")]
    (pause,) = actions(out, "infusion_pause")
    assert pause.detail == {"reason": "BP 188/114, prescriber called", "infused_min": 29.0}
    surge.end = 2400.0
    b.act(2430.0, m.measure_nibp, **USER)
    b.run_to(2640.0)
    assert m.alarms.showing("bp_high") is None  # acknowledged while active: it cleared
    out = b.act(2640.0, m.resume_infusion, reason="BP 128/82, prescriber: go on", **USER)
    assert prompts(out) == []  # the condition is gone: nothing to prompt
    assert actions(out, "infusion_resume")[0].detail["paused_min"] == 5.0

    # While it runs, q10 (the infusion's interval) also in the effect window (from 2400).
    b.run_to(3599.0)
    assert m.schedule is not None
    assert (m.schedule.interval_s, m.alarms.nibp_overdue.interval_s) == (600.0, 600.0)
    out = b.act(3600.0, m.stop_infusion, amount=0.5, unit=None, **USER)
    (stop,) = actions(out, "infusion_stop")
    assert stop.detail == {
        "given_amount": 0.5, "unit": "mg/kg", "infused_min": 45.0, "paused_min": 5.0,
        "elapsed_min": 50.0, "pauses": 1,
    }  # fmt: skip
    assert (m.schedule.interval_s, m.alarms.nibp_overdue.interval_s) == (900.0, 900.0)
    b.run_to(3600.0 + 3600.0)
    # A scheduled request comes one interval after the last request or reading: 10 min
    # while the infusion ran (onset and effect alike), 15 min (effect) from its stop.
    assert scheduled_gaps(b.events, 600.0, 3600.0) == {600.0}
    assert scheduled_gaps(b.events, 3600.0, 7200.0) == {900.0}
    # The infusion stopped well inside the window: effect ends with the dose's window.
    b.run_to(600.0 + 150 * 60.0)
    assert [(p.t, p.phase) for p in b.since(600.0, PhaseChanged)] == [
        (600.0, Phase.ONSET), (2400.0, Phase.EFFECT), (9600.0, Phase.RECOVERY),
    ]  # fmt: skip
    # Readiness: 120 min after the dose (7800) and 90 min after the stop (9000).
    assert m.discharge._earliest == 9000.0
    assert m.infusion == Infusion(
        started_t=600.0, planned_amount=0.5, unit=DoseUnit.MG_PER_KG, planned_min=45.0,
        pauses=((2340.0, 2640.0),), stopped_t=3600.0, given_amount=0.5,
        given_unit=DoseUnit.MG_PER_KG,
    )  # fmt: skip


def current(m: Monitor) -> Infusion | None:
    """The monitor's infusion now (a call, so that type narrowing does not stick)."""
    return m.infusion


def scheduled_gaps(events: list[Event], start: float, end: float) -> set[float]:
    """For each scheduled request in [start, end): the time since the request or reading
    before it (the schedule's anchor)."""
    gaps: set[float] = set()
    anchor = -INF
    for e in events:
        if isinstance(e, NibpRequest) and e.reason == "schedule" and start <= e.t < end:
            gaps.add(e.t - anchor)
        if isinstance(e, NibpRequest | Reading):
            anchor = e.t
    return gaps


def test_the_prompt_comes_back_on_resume_and_goes_when_the_alarm_clears() -> None:
    """Resumed while still critical: prompted again; a reading below high ends the prompt."""
    surge = Surge(start=1800.0)
    config = Config.model_validate({"alarms": {"bp_high": {"high_latched": False}}})
    b = dosed_bedside(surge, new_monitor(config))
    m = b.m
    b.run_to(2300.0)
    b.act(2340.0, m.pause_infusion, reason="surge", **USER)
    out = b.act(2350.0, m.resume_infusion, reason="prescriber: go on", **USER)
    (again,) = prompts(out)
    assert again.active
    assert [r[1:] for r in again.readings] == [SURGE, SURGE]
    surge.end = 2355.0
    b.act(2360.0, m.measure_nibp, **USER)
    b.run_to(2400.0)
    # Back below the limits: bp_high clears once the reading has held 5 s; the prompt goes.
    (gone,) = prompts(b.since(2351.0, InfusionPrompt))
    assert (gone.active, gone.reason) == (False, "bp_high cleared")
    assert gone.t == 2390.0 + 5.0
    assert m.alarms.showing("bp_high") is None


def test_a_critical_reading_prompts_alone_and_a_stop_ends_the_prompt() -> None:
    """One reading >= 200/120 is high at once: the prompt shows that one reading."""
    b = dosed_bedside(lambda t: (205, 118) if t > 1500 else CALM)
    m = b.m
    b.run_to(1640.0)
    (prompt,) = prompts(b.events)
    assert len(prompt.readings) == 1
    assert prompt.readings[0][1:] == (205, 118)
    out = b.act(1700.0, m.stop_infusion, amount=20.0, unit=DoseUnit.MG, reason="BP", **USER)
    assert [(p.active, p.reason) for p in prompts(out)] == [(False, "infusion stopped")]
    assert actions(out, "infusion_stop")[0].detail["unit"] == "mg"
    # Stopped and critical: no prompt comes again, but the alarm goes on as ever.
    b.run_to(3000.0)
    assert len(prompts(b.events)) == 2
    assert m.alarms.showing("bp_high") == (Priority.HIGH, AlarmState.ACTIVE)


def test_a_long_infusion_holds_the_effect_window_until_its_stop_and_tail() -> None:
    """Still running at dose + 150 min: effect until the stop + 90 min; readiness waits."""
    b = dosed_bedside(lambda t: CALM)
    m = b.m
    end_of_window = 600.0 + 150 * 60
    b.run_to(end_of_window + 3000.0)
    assert m.phase is Phase.EFFECT
    assert m.discharge._earliest == INF
    (readiness_t,) = [e.t for e in b.events if isinstance(e, Reading)][-1:]
    assert "infusion running" in m.discharge._unmet(readiness_t, alarms_shown=False,
                                                    baseline=None)  # fmt: skip
    stop = end_of_window + 3000.0
    b.act(stop, m.stop_infusion, amount=0.9, unit=None, **USER)
    assert m.timeline.next_due() == stop + 90 * 60
    b.run_to(stop + 90 * 60)
    # q10 all through the effect window while it ran, the effect phase's q15 after it.
    assert scheduled_gaps(b.events, 2400.0, stop) == {600.0}
    assert scheduled_gaps(b.events, stop, stop + 90 * 60) == {900.0}
    assert [(p.t, p.phase) for p in b.since(2400.0, PhaseChanged)] == [
        (2400.0, Phase.EFFECT), (stop + 90 * 60, Phase.RECOVERY),
    ]  # fmt: skip
    assert m.discharge._earliest == stop + 90 * 60
    assert "time since infusion stop" in m.discharge._unmet(stop + 60, alarms_shown=False,
                                                            baseline=None)  # fmt: skip


def test_the_tail_and_intervals_come_from_config() -> None:
    """`infusion_tail_min`, `discharge_after_stop_min` and `infusion_interval_min`."""
    iv = RouteTimeline(onset_min=10, effect_end_min=20, infusion_tail_min=7,
                       discharge_after_stop_min=12, discharge_after_min=15)  # fmt: skip
    config = Config(timeline=TimelineConfig(iv=iv), nibp=NibpConfig(infusion_interval_min=3))
    b = dosed_bedside(lambda t: CALM, new_monitor(config))
    m = b.m
    assert m.schedule is not None
    b.run_to(600.0 + 11 * 60)
    assert m.phase is Phase.EFFECT
    assert m.schedule.interval_s == 180.0
    b.act(600.0 + 25 * 60, m.stop_infusion, amount=0.5, unit=None, **USER)
    assert m.schedule.interval_s == 15 * 60.0  # the effect phase's own
    assert m.timeline.next_due() == 600.0 + 32 * 60
    assert m.discharge._earliest == 600.0 + 37 * 60


# ---- refusals -------------------------------------------------------------------------------


def test_commands_that_make_no_sense_are_refused_and_change_nothing() -> None:
    m = new_monitor()
    with pytest.raises(CommandRejected, match="no session is running"):
        m.start_infusion(1.0, **PLAN, **USER)
    m.start_session(0.0, session_id="s1", route=Route.IV, **USER)
    refusals: list[tuple[Callable[..., list[Event]], dict[str, Any], str]] = [
        (m.pause_infusion, {"reason": "x"}, "no infusion is running: nothing to pause"),
        (m.resume_infusion, {"reason": "x"}, "no infusion is running: nothing to resume"),
        (m.stop_infusion, {"amount": 1.0, "unit": None}, "no infusion was started"),
        (m.start_infusion, {**PLAN, "amount": float("nan")}, "planned amount: must be"),
        (m.start_infusion, {**PLAN, "amount": 6.0}, "planned amount: must be 0-5 mg/kg"),
        (m.start_infusion, {**PLAN, "amount": 501.0, "unit": DoseUnit.MG}, "0-500 mg"),
        (m.start_infusion, {**PLAN, "amount": 0.0}, "planned amount: must be more than 0"),
        (m.start_infusion, {**PLAN, "planned_min": float("inf")}, "planned minutes"),
        (m.start_infusion, {**PLAN, "planned_min": 0.0}, "planned minutes"),
        (m.start_infusion, {**PLAN, "planned_min": 241.0}, "planned minutes"),
    ]
    for command, kw, message in refusals:
        with pytest.raises(CommandRejected, match=message):
            command(10.0, **kw, **USER)
    assert current(m) is None
    assert m.timeline.dose_t is None
    m.start_infusion(20.0, **PLAN, **USER)
    refusals = [
        (m.start_infusion, PLAN, "an infusion was already started"),
        (m.mark_dose, {}, "the dose was already marked"),
        (m.resume_infusion, {"reason": "x"}, "the infusion is not paused"),
        (m.pause_infusion, {"reason": "  "}, "a pause needs a reason"),
        (m.pause_infusion, {"reason": "x" * 501}, "longer than 500"),
        (m.stop_infusion, {"amount": -1.0, "unit": None}, "amount given: must be 0-5 mg/kg"),
        (m.end_session, {}, "the infusion is still running: stop it first"),
    ]
    for command, kw, message in refusals:
        with pytest.raises(CommandRejected, match=message):
            command(30.0, **kw, **USER)
    m.pause_infusion(40.0, reason="nausea", **USER)
    with pytest.raises(CommandRejected, match="already paused"):
        m.pause_infusion(41.0, reason="x", **USER)
    with pytest.raises(CommandRejected, match="needs a reason"):
        m.resume_infusion(42.0, reason="", **USER)
    # Stopped while paused: the pause ends at the stop.
    m.stop_infusion(50.0, amount=0.1, unit=None, **USER)
    stopped = current(m)
    assert stopped is not None
    assert stopped.pauses == ((40.0, 50.0),)
    after_stop: list[tuple[Callable[..., list[Event]], dict[str, Any]]] = [
        (m.pause_infusion, {"reason": "x"}),
        (m.stop_infusion, {"amount": 1.0, "unit": None}),
        (m.resume_infusion, {"reason": "x"}),
    ]
    for command, kw in after_stop:
        with pytest.raises(CommandRejected, match="already stopped"):
            command(60.0, **kw, **USER)
    m.end_session(70.0, **USER)


def test_the_start_is_the_dose_and_passes_the_same_gate() -> None:
    """A closed dose gate needs an override reason for an infusion too; a bolus has none."""
    b = Bedside(new_monitor(), bp=lambda t: (195, 118))
    m = b.m
    b.take(m.start_session(0.0, session_id="s1", route=Route.IV, **USER))
    b.run_to(400.0)
    with pytest.raises(CommandRejected, match=r"dose_gate is high .*override with a reason"):
        m.start_infusion(400.0, **PLAN, **USER)
    out = b.act(401.0, m.start_infusion, **PLAN, reason="prescriber reviewed", **USER)
    (dose,) = actions(out, "dose")
    assert dose.detail == {"override_reason": "prescriber reviewed", "infusion": True}
    # bp_high is already high and confirmed: the infusion runs, so the prompt shows at once.
    assert [p.active for p in prompts(out)] == [True]
    # A bolus dose keeps working as it is, and leaves no infusion.
    m2 = new_monitor()
    m2.start_session(0.0, session_id="s2", route=Route.IM, **USER)
    out = m2.mark_dose(10.0, **USER)
    assert actions(out, "dose")[0].detail == {}
    assert actions(out, "infusion_start") == []
    with pytest.raises(CommandRejected, match="no infusion is running"):
        m2.pause_infusion(20.0, reason="x", **USER)


# ---- status, wire and record ----------------------------------------------------------------


def test_the_status_and_public_events_carry_the_infusion_but_no_reasons() -> None:
    b = dosed_bedside(Surge(start=1800.0))
    b.run_to(2300.0)
    b.act(2340.0, b.m.pause_infusion, reason="Jane Q. Patient flushed", **USER)
    status = RoomStatus("room-1")
    prompt_seen = False
    for event in b.events:
        status.apply(event)
        prompt_seen = prompt_seen or status.prompt is not None
    assert prompt_seen
    shown = status.snapshot(2400.0)["infusion"]
    assert shown == {
        "started_t": 600.0, "planned_amount": 0.5, "unit": "mg/kg", "planned_min": 45.0,
        "state": "paused", "infused_min": 29.0, "paused_min": 1.0, "elapsed_min": 30.0,
        "pauses": [{"t": 2340.0, "until_t": None}], "stopped_t": None, "given_amount": None,
        "given_unit": None, "prompt": None,
    }  # fmt: skip
    public = [public_action_json(a) for a in b.events if isinstance(a, NurseAction)]
    assert "Jane" not in json.dumps(public)
    assert {"action": "infusion_pause", "infused_min": 29.0}.items() <= public[-1].items()


class Room:
    """A `Bedside` whose events go through a bus to the real recorder, on a virtual clock."""

    def __init__(self, path: Path, bedside: Bedside) -> None:
        self.b = bedside
        self.clock = bedside.clock = VirtualClock()
        self.bus = bedside.bus = Bus()
        self.recorder = Recorder(path=path, clock=self.clock, room_id="room-1")
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self.recorder.open()
        sub = self.bus.subscribe("rec", maxsize=100_000)
        self._task = asyncio.create_task(self.recorder.run(sub))
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.bus.close()
        assert self._task is not None
        await self._task
        await self.recorder.close()

    async def reopen(self, now: float) -> OpenSession:
        """What a daemon restarted at `now` reads back (the first one died without a word)."""
        await self.recorder.sync()
        self.clock.t = now
        session = await self.recorder.open_session(
            max_age_s=24 * 3600.0, baseline_window_s=300.0, nibp_devices=frozenset({"nibp"})
        )
        assert session is not None
        return session


async def test_the_record_and_a_resume_after_a_crash_keep_the_infusion(tmp_path: Path) -> None:
    """kill -9 while paused for a surge: the record has every step, and the resumed session
    knows its infusion: paused, q10, the effect window held, the prompt on a resume."""
    path = tmp_path / "r.sqlite"
    surge = Surge(start=1800.0)
    async with Room(path, Bedside(new_monitor(), bp=surge)) as room:
        m = dose(room.b).m
        room.b.run_to(2300.0)
        room.b.act(2340.0, m.pause_infusion, reason="surge", **USER)
        room.b.run_to(2350.0)
        session = await room.reopen(now=2400.0)
    assert session.dose_t == 600.0
    assert session.infusion == Infusion(
        started_t=600.0, planned_amount=0.5, unit=DoseUnit.MG_PER_KG, planned_min=45.0,
        pauses=((2340.0, None),),
    )  # fmt: skip
    db = sqlite3.connect(path)
    rows = db.execute(
        "SELECT t, action, user, source, detail FROM actions WHERE action LIKE 'infusion%'"
        " OR action = 'dose' ORDER BY id"
    ).fetchall()
    assert [(t, a, json.loads(d)) for t, a, _, _, d in rows] == [
        (600.0, "dose", {"infusion": True}),
        (600.0, "infusion_start", {"planned_amount": 0.5, "unit": "mg/kg", "planned_min": 45.0}),
        (2340.0, "infusion_pause", {"reason": "surge", "infused_min": 29.0}),
    ]
    assert {(u, s) for _, _, u, s, _ in rows} == {("ana", "test")}
    assert db.execute("SELECT dose_t FROM sessions").fetchone() == (600.0,)
    recorded = [json.loads(d) for (d,) in db.execute(
        "SELECT data FROM events WHERE type = 'infusion_prompt' ORDER BY id")]  # fmt: skip
    assert [(p["active"], p.get("reason")) for p in recorded] == [
        (True, None), (False, "infusion paused"),
    ]  # fmt: skip

    # The second daemon: paused, no prompt; resumed while the last BP is still critical: the
    # prompt again; the schedule is the infusion's; the window holds until the stop.
    async with Room(path, Bedside(new_monitor(), bp=surge)) as room:
        b = room.b
        m = b.m
        out = b.take(m.resume(2400.0, session=session))
        (started,) = [e for e in out if isinstance(e, SessionStarted)]
        assert started.infusion == session.infusion
        assert prompts(out) == []
        assert m.phase is Phase.EFFECT
        assert m.schedule is not None
        assert m.schedule.interval_s == 600.0
        out = b.act(2410.0, m.resume_infusion, reason="prescriber: go on", **USER)
        (prompt,) = prompts(out)
        assert [r[1:] for r in prompt.readings] == [SURGE, SURGE]
        surge.end = 2420.0
        b.act(2430.0, m.pause_infusion, reason="again", **USER)
        b.act(2500.0, m.resume_infusion, reason="calm", **USER)
        b.run_to(600.0 + 150 * 60 + 600)
        assert m.phase is Phase.EFFECT  # still running: held
        b.act(10_000.0, m.stop_infusion, amount=0.5, unit=None, **USER)
        session = await room.reopen(now=10_100.0)
    assert session.infusion is not None
    assert session.infusion.pauses == ((2340.0, 2410.0), (2430.0, 2500.0))
    assert session.infusion.stopped_t == 10_000.0
    # A third run after the stop: the tail counts from the recorded stop.
    m = new_monitor()
    m.resume(10_100.0, session=session)
    assert m.phase is Phase.EFFECT
    assert m.timeline.next_due() == 10_000.0 + 90 * 60
    assert m.schedule is not None
    assert m.schedule.interval_s == 900.0
    assert m.discharge._earliest == 10_000.0 + 90 * 60


async def test_the_report_tells_the_infusion_step_by_step(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    async with Room(path, Bedside(new_monitor(), bp=Surge(start=1800.0))) as room:
        m = dose(room.b).m
        room.b.run_to(2300.0)
        room.b.act(2340.0, m.pause_infusion, reason="surge", **USER)
        room.b.act(2400.0, m.resume_infusion, reason="calm", **USER)
        room.b.act(3300.0, m.stop_infusion, amount=0.5, unit=None, **USER)
        session = await room.reopen(now=3400.0)
    text = report_of(path, session.session_id)
    assert "<h2>IV infusion</h2>" in text
    assert "started: 0.5 mg/kg planned over 45.0 min" in text
    assert "paused after 29.0 min: surge" in text
    assert "resumed after 1.0 min: calm" in text
    assert "stopped: 0.5 mg/kg given" in text


def report_of(record: Path, session_id: str) -> str:
    """`sessiond report` of one session of `record`, as HTML."""
    config = record.with_name("c.toml")
    config.write_text(f"[records]\npath = '{record}'\n")
    out = record.with_name("report.html")
    assert main(["report", session_id, "--config", str(config), "--out", str(out)]) == 0
    return out.read_text()


# ---- replay ---------------------------------------------------------------------------------


def masimo(s: int) -> bytes:
    hh, mm, ss = 9 + s // 3600, (s // 60) % 60, s % 60
    return (
        f"11/22/26 {hh:02d}:{mm:02d}:{ss:02d} SN=0000012345 SPO2=097% BPM=072 PI=02.80% "
        "SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
    ).encode()


def capture(path: Path, seconds: int) -> Path:
    lines = ["# sessiond-capture 1", "# port spo2 masimo-ascii1"]
    lines += [f"{s + 0.1:.3f} spo2 < {masimo(s).hex()}" for s in range(seconds)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_replay_infusion_end_holds_the_effect_window(tmp_path: Path) -> None:
    """`--infusion-end`: the dose at `--dose-at` is an infusion stopped then; without it the
    dose's own window (DESIGN §6 unchanged)."""
    iv = RouteTimeline(onset_min=1, effect_end_min=2, infusion_tail_min=1)
    config = Config(timeline=TimelineConfig(iv=iv))
    cap = capture(tmp_path / "c.cap", 600)

    def phases(**kw: Any) -> list[tuple[float, str]]:
        lines: list[str] = []
        with cap.open(encoding="utf-8") as f:
            replay(CaptureReader(f), config=config, write=lines.append, **kw)
        events = [json.loads(line) for line in lines]
        return [(e["t"], e["phase"]) for e in events if e["type"] == "phase"]

    assert phases(dose_at=60.0) == [
        (0.0, "baseline"), (60.0, "onset"), (120.0, "effect"), (180.0, "recovery"),
    ]  # fmt: skip
    assert phases(dose_at=60.0, infusion_end=300.0) == [
        (0.0, "baseline"), (60.0, "onset"), (120.0, "effect"), (360.0, "recovery"),
    ]  # fmt: skip
    # Stopped inside the window: the dose's window stands.
    assert phases(dose_at=60.0, infusion_end=150.0)[-1] == (180.0, "recovery")
    with pytest.raises(ValueError, match="needs a dose time before it"):
        replay(CaptureReader(["# sessiond-capture 1\n", "# port spo2 masimo-ascii1\n"]),
               config=config, infusion_end=5.0,
               write=print)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--infusion-end", "300"], "--infusion-end needs --dose-at"),
        (["--dose-at", "300", "--infusion-end", "200"], "--infusion-end must be after --dose-at"),
        (["--dose-at", "300", "--infusion-end", "nan"], "not a finite number of seconds"),
    ],
)
def test_replay_refuses_a_bad_infusion_end(tmp_path: Path, args: list[str], message: str) -> None:
    cap = capture(tmp_path / "c.cap", 5)
    r = subprocess.run([sys.executable, "-m", "sessiond", "replay", str(cap), *args],
                       capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# ---- the simulator --------------------------------------------------------------------------


def test_a_scenario_infusion_runs_its_pump_time_with_its_pauses() -> None:
    scenario = parse_scenario_text(
        'name = "i"\nduration_s = 9000\ndose_at_s = 300\n'
        "[infusion]\nplanned_min = 45\npauses = [{ at_s = 2100, duration_s = 600 }]\n",
        source="i.toml",
    )
    assert scenario.infusion is not None
    assert scenario.infusion.running(300.0) == [(300.0, 2100.0), (2700.0, 3600.0)]
    assert builtin_scenario("iv_infusion").infusion == scenario.infusion


_DOSED = "dose_at_s = 0\n[infusion]\nplanned_min = 40\n"
_PAUSE = "{ at_s = %d, duration_s = 60 }"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[infusion]\nplanned_min = 40\n", "dose_at_s: required with [infusion]"),
        (f'route = "im"\n{_DOSED}', "infusion: an infusion is IV"),
        ("dose_at_s = 0\n[infusion]\nplanned_min = 0\n", "infusion.planned_min: Input should"),
        (f"{_DOSED}pauses = [{_PAUSE % 2400}]\n",
         "infusion.pauses.0.at_s: must be after the start and before the infusion's end (2400 s)"),
        (f"{_DOSED}pauses = [{_PAUSE % 600}, {_PAUSE % 630}]\n",
         "infusion.pauses.1.at_s: must be after the pause"),
    ],
)  # fmt: skip
def test_a_scenario_infusion_that_cannot_be_is_named(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_scenario_text(f'name = "i"\nduration_s = 9000\n{text}', source="i.toml")
    assert any(p.startswith(f"i.toml: {problem}") for p in caught.value.problems), caught.value


def test_the_bp_response_follows_the_infusion() -> None:
    """Builds while the pump runs, dips in a pause, peaks at the stop, ~gone 1.5 h after."""
    t = np.arange(0, 4 * 3600, 10, dtype=np.float64)
    plain = infusion_rise(t, running=[(600.0, 600.0 + 40 * 60)])
    stop = 600 + 40 * 60
    assert t[plain.argmax()] == stop
    assert plain.max() == pytest.approx(1.0)  # the reference infusion: the reported peak
    assert plain[t == stop + 90 * 60][0] == pytest.approx(0.05, abs=1e-3)
    paused = infusion_rise(t, running=[(600.0, 2400.0), (2700.0, 3600.0)])
    assert paused[t == 2700.0][0] < paused[t == 2400.0][0]  # falls in the pause
    assert t[paused.argmax()] == 3600.0
    # The scenario's patient: the same seed without a response differs by the response only.
    scenario = builtin_scenario("iv_infusion")
    dosed = simulate_patient(scenario)
    calm = scenario.patient.model_copy(update={"ketamine_response": 0.0})
    flat = simulate_patient(scenario.model_copy(update={"patient": calm}))
    rise = dosed.sys.astype(float) - flat.sys
    assert 3500 <= rise.argmax() <= 3700  # peak near the stop (3600)
    assert rise[2700] < rise[2100]  # the pause lowers it
    assert rise[3600 + 85 * 60 :].max() <= 0.07 * rise.max() + 1  # the scenario ends at 90
    assert (dosed.pr[3600] - flat.pr[3600]) >= 15  # the pulse follows it (4 x 5 bpm)
