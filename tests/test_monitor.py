"""Timeline and monitor on plain calls, including a whole 3-hour session on virtual time."""

from __future__ import annotations

import random

import pytest

from sessiond.config import Config, RouteTimeline, TimelineConfig
from sessiond.model import (
    AlarmTransition,
    NurseAction,
    Phase,
    PhaseChanged,
    Reading,
    Route,
    SessionStarted,
)
from sessiond.session.commands import CommandRejected
from sessiond.session.monitor import Monitor
from sessiond.session.timeline import Timeline


def phases(events) -> list[tuple[float, str]]:
    return [(e.t, e.phase.value) for e in events if isinstance(e, PhaseChanged)]


def test_timeline_phases_follow_the_dose():
    tl = Timeline(config=TimelineConfig())
    assert phases(tl.start(0.0, Route.IV)) == [(0.0, "baseline")]
    assert tl.next_due() is None  # no dose, no clock
    assert phases(
        tl.dose(
            600.0,
        )
    ) == [(600.0, "onset")]
    assert tl.next_due() == 600.0 + 30 * 60
    # One call far in the future yields each change at the time it was due.
    assert phases(tl.advance(20_000.0)) == [(2400.0, "effect"), (9600.0, "recovery")]
    assert tl.next_due() is None
    assert phases(tl.end(20_001.0)) == [(20_001.0, "ended")]


@pytest.mark.parametrize(("route", "onset_end", "effect_end"), [
    (Route.IV, 30, 150), (Route.ORAL, 60, 240)])  # fmt: skip
def test_phase_durations_come_from_the_route(route, onset_end, effect_end):
    tl = Timeline(config=TimelineConfig())
    tl.start(0.0, route)
    tl.dose(0.0)
    assert phases(tl.advance(1e6)) == [
        (onset_end * 60.0, "effect"),
        (effect_end * 60.0, "recovery"),
    ]


def test_configured_durations_are_used():
    config = TimelineConfig(iv=RouteTimeline(onset_min=10, effect_end_min=20))
    tl = Timeline(config=config)
    tl.start(0.0, Route.IV)
    tl.dose(100.0)
    assert phases(tl.advance(1e6)) == [(700.0, "effect"), (1300.0, "recovery")]


def monitor() -> Monitor:
    return Monitor(config=Config(), streaming=["spo2"])


def test_start_and_dose_are_attributed_and_checked():
    m = monitor()
    with pytest.raises(CommandRejected, match="start one first"):
        m.mark_dose(1.0, user="ana", source="console")
    events = m.start_session(2.0, session_id="s1", route=Route.IM, user="ana", source="console")
    assert isinstance(events[0], SessionStarted)
    assert events[0].route is Route.IM
    action = next(e for e in events if isinstance(e, NurseAction))
    assert (action.action, action.user, action.source) == ("session_start", "ana", "console")
    assert phases(events) == [(2.0, "baseline")]
    with pytest.raises(CommandRejected, match="already running"):
        m.start_session(3.0, session_id="s2", route=Route.IV, user="ana", source="console")
    events = m.mark_dose(5.0, user="bo", source="mqtt")
    assert phases(events) == [(5.0, "onset")]
    with pytest.raises(CommandRejected, match="already marked"):
        m.mark_dose(6.0, user="bo", source="console")
    assert m.phase is Phase.ONSET  # the rejected command changed nothing


def test_end_session_then_a_new_one_may_start():
    m = monitor()
    with pytest.raises(CommandRejected, match="no session"):
        m.end_session(0.0, user="ana", source="console")
    m.start_session(0.0, session_id="s1", route=Route.IV, user="ana", source="console")
    m.mark_dose(10.0, user="ana", source="console")
    events = m.end_session(9000.0, user="ana", source="console")
    action = events[0]
    assert isinstance(action, NurseAction)
    assert action.action == "session_end"
    assert phases(events) == [(9000.0, "ended")]
    assert m.next_due() == float("inf") or m.timeline.next_due() is None
    with pytest.raises(CommandRejected, match="no session"):
        m.end_session(9001.0, user="ana", source="console")
    with pytest.raises(CommandRejected, match="start one first"):
        m.mark_dose(9002.0, user="ana", source="console")
    events = m.start_session(9003.0, session_id="s2", route=Route.IM, user="bo", source="mqtt")
    assert phases(events) == [(9003.0, "baseline")]


def test_whole_three_hour_session_on_virtual_time():
    """Three hours of 1 Hz readings with one desaturation, in well under a second."""
    m = monitor()
    out = m.start_session(0.0, session_id="s", route=Route.IV, user="u", source="test")
    for second in range(3 * 3600):
        t = float(second)
        if second == 600:
            out += m.advance(t)
            out += m.mark_dose(t, user="u", source="test")
        spo2 = 87 if 3000 <= second < 3060 else 97
        out += m.advance(t)
        out += m.on_reading(Reading(t=t, device="spo2", spo2=spo2, pr=70))
    out += m.advance(3 * 3600.0)
    assert phases(out) == [(0.0, "baseline"), (600.0, "onset"), (2400.0, "effect"),
                           (9600.0, "recovery")]  # fmt: skip
    alarms = [(e.t, e.alarm_id, e.priority.label, e.state.value, e.phase and e.phase.value)
              for e in out if isinstance(e, AlarmTransition)]  # fmt: skip
    assert alarms == [
        (3015.0, "spo2_low", "medium", "active", "effect"),
        (3065.0, "spo2_low", "medium", "cleared", "effect"),
    ]
    times = [e.t for e in out]
    assert times == sorted(times)


def test_acknowledge_is_recorded_and_rejected_when_nothing_is_shown():
    m = monitor()
    m.start_session(0.0, session_id="s", route=Route.IV, user="u", source="test")
    with pytest.raises(CommandRejected, match="spo2_low is not active"):
        m.acknowledge(1.0, alarm_id="spo2_low", user="ana", source="console")
    m.advance(0.0)
    m.on_reading(Reading(t=0.0, device="spo2", spo2=80, pr=70))
    m.on_reading(Reading(t=1.0, device="spo2", spo2=97, pr=70))
    m.advance(10.0)
    events = m.acknowledge(10.0, alarm_id="spo2_low", user="ana", source="console")
    action = events[0]
    assert isinstance(action, NurseAction)
    assert (action.action, action.user, action.detail) == (
        "ack", "ana", {"alarm_id": "spo2_low", "priority": "high"})  # fmt: skip
    (cleared,) = events[1:]
    assert isinstance(cleared, AlarmTransition)
    assert (cleared.alarm_id, cleared.state.value) == ("spo2_low", "cleared")


def test_ending_the_session_ends_its_alarms():
    """After End no BP reading can come to clear `bp_high`/`bp_rise`: End clears them (and
    every alarm of the patient), so the room leaves the alarm override; equipment alarms stay."""
    from sessiond.model import AlarmState, Event, Priority  # noqa: PLC0415
    from sessiond.status import RoomStatus  # noqa: PLC0415

    m = Monitor(config=Config(), streaming=["spo2"], nibp=["nibp"])
    status = RoomStatus("room")
    feed = status.apply

    def run(events: list[Event]) -> list[Event]:
        for event in events:
            feed(event)
        return events

    run(m.start_session(0.0, session_id="s", route=Route.IV, user="ana", source="console"))
    for t in (10.0, 310.0):
        run(m.advance(t))
        run(m.on_reading(Reading(t=t, device="nibp", sys=130, dia=80, map=97, pr=70)))
    run(m.mark_dose(600.0, user="ana", source="console"))
    for t in (900.0, 905.0):
        run(m.advance(t))
        run(m.on_reading(Reading(t=t, device="nibp", sys=205, dia=121, map=150, pr=90)))
    # The oximeter is silent: device_lost (equipment) is shown too.
    assert status.alarms["bp_high"].priority is Priority.HIGH
    assert status.alarms["bp_rise"].state is AlarmState.ACTIVE
    assert "device_lost" in status.alarms
    ended = run(m.end_session(1000.0, user="ana", source="console"))
    cleared = {
        e.alarm_id
        for e in ended
        if isinstance(e, AlarmTransition) and e.state is AlarmState.CLEARED
    }
    assert {"bp_high", "bp_rise"} <= cleared
    assert set(status.alarms) == {"device_lost"}
    assert all(e.t == 1000.0 for e in ended if isinstance(e, AlarmTransition))
    # Nothing comes back on its own, and a new session starts with no BP history.
    assert not [e for e in run(m.advance(5000.0)) if isinstance(e, AlarmTransition)
                and e.alarm_id.startswith("bp")]  # fmt: skip
    run(m.start_session(6000.0, session_id="s2", route=Route.IV, user="ana", source="console"))
    assert "bp_high" not in status.alarms


def test_a_reading_that_changes_only_the_pi_is_a_repeat():
    """No rule reads the PI: a stream whose PI wanders gives the events of the same stream
    with a steady PI, and its readings are not evaluated any more often."""
    rng = random.Random(7)
    steady, wandering = (
        Monitor(config=Config(), streaming=["spo2"], nibp=[], start=0.0) for _ in range(2)
    )
    got: dict[int, list[object]] = {id(steady): [], id(wandering): []}
    for m in (steady, wandering):
        got[id(m)] += m.start_session(0.0, session_id="s", route=Route.IV, user="a", source="t")
    t, spo2, pr = 0.0, 97, 72
    for k in range(3000):
        t += rng.choice([1 / 60, 0.25, 1.0, 3.0])
        if rng.random() < 0.05:
            spo2 = rng.choice([80, 86, 91, 97])
            pr = rng.choice([38, 72, 130])
        if k == 1500:
            for m in (steady, wandering):
                got[id(m)] += m.advance(t) + m.mark_dose(t, user="a", source="t", reason="test")
        for m, pi in ((steady, 2.5), (wandering, round(rng.uniform(0.2, 9.9), 2))):
            reading = Reading(t=t, device="spo2", spo2=spo2, pr=pr, pi=pi)
            got[id(m)] += m.advance(t) + m.on_reading(reading)
    for m in (steady, wandering):
        got[id(m)] += m.advance(t + 600.0)
    assert got[id(steady)] == got[id(wandering)]
    assert any(isinstance(e, AlarmTransition) for e in got[id(steady)])
    assert wandering.evaluations == steady.evaluations < 3000
