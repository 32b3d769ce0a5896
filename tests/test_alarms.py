"""The alarm engine on plain calls: limits, delays, hysteresis, validity gate, latching, silence."""

from __future__ import annotations

import pytest

from sessiond.config import Config
from sessiond.model import AlarmState, AlarmTransition, Event, Phase, Priority, Quality, Reading
from sessiond.session.alarms import INF, AlarmEngine
from sessiond.session.rules import Level, LevelState


def engine(**kw) -> AlarmEngine:
    return AlarmEngine(config=Config().alarms, streaming=["spo2"], **kw)


def feed(
    eng: AlarmEngine, t: float, spo2: int | None, flags: Quality = Quality.NONE
) -> list[Event]:
    out = eng.advance(t)
    out += eng.on_reading(Reading(t=t, device="spo2", spo2=spo2, pr=72, flags=flags))
    return out


def run(eng: AlarmEngine, series: list[tuple[float, int | None, Quality]]):
    out: list[Event] = []
    for t, spo2, flags in series:
        out += feed(eng, t, spo2, flags)
    return out


def steady(start: int, stop: int, spo2: int | None, flags: Quality = Quality.NONE):
    return [(float(t), spo2, flags) for t in range(start, stop)]


def brief(events: list[Event], alarm_id: str = "spo2_low"):
    return [
        (e.t, e.priority.label, e.state.value)
        for e in events
        if isinstance(e, AlarmTransition) and e.alarm_id == alarm_id
    ]


# --- spo2_low: < 90 % for 15 s → medium; < 85 % → high at once, latched --------------------


@pytest.mark.parametrize(
    ("spo2", "seconds", "expected"),
    [
        (90, 40, []),  # at the limit is not below it
        (89, 14, []),  # below, but shorter than the delay
        (89, 40, [(15.0, "medium", "active")]),  # the delay counts from the first low reading
        (85, 40, [(15.0, "medium", "active")]),  # at the critical limit: still only medium
        (84, 3, [(0.0, "high", "active")]),  # below critical: at once, no delay
    ],
)
def test_spo2_low_limits_and_delays(spo2, seconds, expected):
    eng = engine()
    out = run(eng, steady(0, seconds, spo2))
    assert brief(out) == expected


def test_delay_fires_at_its_time_even_without_a_reading_then():
    """The 15 s delay is a deadline: it fires at 15.0 although the readings come at x.5."""
    eng = engine()
    run(eng, [(0.5 + k, 88, Quality.NONE) for k in range(15)])  # last reading at 14.5
    assert eng.next_due() == pytest.approx(15.5)
    assert brief(eng.advance(15.7)) == [(15.5, "medium", "active")]


def test_a_dip_shorter_than_the_delay_raises_nothing():
    eng = engine()
    out = run(eng, steady(0, 10, 97) + steady(10, 22, 87) + steady(22, 60, 97))
    assert brief(out) == []


def test_pending_delay_restarts_after_a_normal_reading():
    eng = engine()
    out = run(eng, steady(0, 10, 88) + steady(10, 11, 95) + steady(11, 30, 88))
    assert brief(out) == [(26.0, "medium", "active")]


def test_clears_with_hysteresis_after_five_seconds_inside():
    eng = engine()
    series = steady(0, 20, 88) + steady(20, 40, 90) + steady(40, 50, 91)
    out = run(eng, series)
    # 90 is back at the limit but not past it by the 1 % hysteresis: still active until 91 for 5 s.
    assert brief(out) == [(15.0, "medium", "active"), (45.0, "medium", "cleared")]


def test_clearing_is_interrupted_by_a_low_value():
    eng = engine()
    out = run(eng, steady(0, 20, 88) + steady(20, 23, 95) + [(23.0, 89, Quality.NONE)]
              + steady(24, 40, 95))  # fmt: skip
    assert brief(out) == [(15.0, "medium", "active"), (29.0, "medium", "cleared")]


def test_high_latches_until_acknowledged_and_the_medium_follows():
    eng = engine()
    out = run(eng, steady(0, 10, 84) + steady(10, 30, 88) + steady(30, 60, 97))
    # 84 → 88: past 85 + 1 for 5 s, the high level latches at 15 s, but 88 is still below the
    # medium limit: the alarm stays active (a latch never hides a violation) until 97 for 5 s.
    assert brief(out) == [(0.0, "high", "active"), (35.0, "high", "latched")]
    assert [lv.state for lv in eng.spo2_low.levels] == [LevelState.IDLE, LevelState.LATCHED]


def test_latched_high_becomes_active_again_on_a_new_drop():
    eng = engine()
    out = run(eng, steady(0, 5, 84) + steady(5, 30, 97) + steady(30, 32, 83))
    assert brief(out) == [(0.0, "high", "active"), (10.0, "high", "latched"),
                          (30.0, "high", "active")]  # fmt: skip


def test_active_event_carries_value_and_limit():
    eng = engine()
    (event,) = [
        e
        for e in run(eng, steady(0, 16, 88))
        if isinstance(e, AlarmTransition) and e.alarm_id == "spo2_low"
    ]
    assert (event.value, event.limit, event.priority, event.state) == (
        88, 90, Priority.MEDIUM, AlarmState.ACTIVE)  # fmt: skip


# --- validity gate -------------------------------------------------------------------------


@pytest.mark.parametrize("flag", [Quality.ARTIFACT, Quality.SEARCHING])
def test_invalid_readings_freeze_the_delay(flag):
    """10 s low, 20 s flagged low, then low again: the delay resumes with 5 s left."""
    eng = engine()
    out = run(eng, steady(0, 10, 88) + steady(10, 30, 88, flag) + steady(30, 40, 88))
    assert brief(out) == [(35.0, "medium", "active")]


def test_sensor_off_raises_sensor_off_not_spo2_low():
    eng = engine()
    out = run(eng, steady(0, 10, 97) + steady(10, 30, None, Quality.SENSOR_OFF)
              + steady(30, 35, 97))  # fmt: skip
    assert brief(out) == []
    assert brief(out, "sensor_off") == [(15.0, "medium", "active"), (30.0, "medium", "cleared")]


def test_frames_with_no_value_and_no_flag_are_sensor_off():
    """A Masimo all-dashes line or a Nonin 127/511 without status bits: no finger, not lost."""
    eng = engine()
    out = []
    for t in range(12):
        out += eng.advance(float(t))
        out += eng.on_reading(Reading(t=float(t), device="spo2"))
    assert brief(out, "sensor_off") == [(5.0, "medium", "active")]
    assert brief(out, "device_lost") == []


def test_invalid_data_does_not_clear_an_active_alarm():
    eng = engine()
    out = run(eng, steady(0, 20, 88) + steady(20, 60, 97, Quality.ARTIFACT))
    assert brief(out) == [(15.0, "medium", "active")]


def test_a_silent_device_freezes_the_delay_at_the_stale_time():
    """Readings stop at 9 s: the value stands for 5 s, then the delay freezes."""
    eng = engine()
    run(eng, steady(0, 10, 88))
    out = eng.advance(30.0)
    assert brief(out) == []
    assert brief(out, "device_lost") == [(14.0, "medium", "active")]
    # The device comes back 16 s after its value went stale, still low: the delay resumes
    # with the 1 s it had left.
    out = run(eng, steady(30, 33, 88))
    assert brief(out) == [(31.0, "medium", "active")]
    assert brief(out, "device_lost") == [(30.0, "medium", "cleared")]


def test_a_delay_frozen_longer_than_its_bound_starts_again():
    """Frozen is not forever: after 30 s without a valid value the delay counts anew."""
    eng = engine()
    run(eng, steady(0, 10, 88))
    eng.advance(100.0)
    out = run(eng, steady(100, 120, 88))
    assert brief(out) == [(115.0, "medium", "active")]


# --- signal_poor, device_lost ---------------------------------------------------------------


def test_signal_poor_after_thirty_seconds_of_artifact():
    eng = engine()
    out = run(eng, steady(0, 40, 97, Quality.ARTIFACT) + steady(40, 41, 97))
    assert brief(out, "signal_poor") == [(30.0, "low", "active"), (40.0, "low", "cleared")]


def test_device_lost_escalates_only_during_onset_and_effect():
    eng = engine()
    eng.set_phase(0.0, Phase.BASELINE)
    run(eng, steady(0, 1, 97))
    out = eng.advance(100.0)
    assert brief(out, "device_lost") == [(5.0, "medium", "active")]
    # Entering onset while still silent for 30 s or more escalates at once.
    out = eng.set_phase(100.0, Phase.ONSET)
    assert brief(out, "device_lost") == [(100.0, "high", "active")]
    # A frame: the link is back, the high latches until acknowledged.
    out = run(eng, steady(101, 102, 97))
    assert brief(out, "device_lost") == [(101.0, "high", "latched")]


def test_device_lost_high_after_thirty_seconds_in_onset():
    eng = engine()
    eng.set_phase(0.0, Phase.ONSET)
    run(eng, steady(0, 1, 97))
    assert brief(eng.advance(60.0), "device_lost") == [
        (5.0, "medium", "active"), (30.0, "high", "active")]  # fmt: skip


def test_device_lost_counts_from_the_start_when_no_frame_ever_comes():
    eng = engine(start=2.0)
    assert brief(eng.advance(10.0), "device_lost") == [(7.0, "medium", "active")]


def test_no_deadline_when_nothing_is_running():
    eng = AlarmEngine(config=Config().alarms, streaming=[])
    assert eng.next_due() == INF
    assert eng.advance(1e9) == []


# --- the level state machine, transition by transition ------------------------------------


def state_of(lv: Level) -> str:
    """The state as a string (a call, so that mypy does not narrow it across updates)."""
    return lv.state.value


def test_level_transitions_one_by_one():
    lv = Level(priority=Priority.MEDIUM, limit=90, delay=10, latched=True)
    step = {"clear_delay": 5.0, "value": 88.0}
    lv.update(0, violating=True, inside=False, **step)
    assert (lv.state, lv.due) == (LevelState.PENDING, 10)
    lv.freeze(4)
    assert (lv.due, lv.remaining) == (INF, 6)
    lv.update(20, violating=True, inside=False, **step)  # resumes: 6 s left
    assert (lv.state, lv.due) == (LevelState.PENDING, 26)
    lv.fire(26)
    assert state_of(lv) == "on"
    lv.update(30, violating=False, inside=True, **step)
    assert (lv.state, lv.due) == (LevelState.CLEARING, 35)
    lv.update(32, violating=False, inside=False, **step)  # within hysteresis: back on
    assert lv.state is LevelState.ON
    lv.update(33, violating=False, inside=True, **step)
    lv.fire(38)
    assert state_of(lv) == "latched"
    lv.update(40, violating=True, inside=False, **step)
    assert state_of(lv) == "on"
    lv.reset()
    assert (lv.state, lv.due, lv.remaining) == (LevelState.IDLE, INF, None)


# --- pr_high / pr_low ----------------------------------------------------------------------


def feed_pr(eng: AlarmEngine, series: list[tuple[int, int, int | None]]) -> list[Event]:
    """`series` is (from second, to second, PR); SpO2 stays normal."""
    out: list[Event] = []
    for start, stop, pr in series:
        for t in range(start, stop):
            out += eng.advance(float(t))
            out += eng.on_reading(Reading(t=float(t), device="spo2", spo2=97, pr=pr))
    return out


@pytest.mark.parametrize(
    ("alarm_id", "series", "expected"),
    [
        ("pr_high", [(0, 30, 120)], []),  # at the limit is not above it
        ("pr_high", [(0, 9, 125), (9, 30, 80)], []),  # shorter than the 10 s delay
        ("pr_high", [(0, 30, 125)], [(10.0, "medium", "active")]),
        ("pr_high", [(0, 30, 145)], [(10.0, "high", "active")]),
        # Not latched: once 145 is gone the medium condition still stands, as an active medium.
        ("pr_high", [(0, 15, 145), (15, 40, 125)],
         [(10.0, "high", "active"), (20.0, "medium", "active")]),
        # 119 is inside the limit but not by the 2 bpm hysteresis: clears only at 118.
        ("pr_high", [(0, 15, 125), (15, 30, 119), (30, 40, 118)],
         [(10.0, "medium", "active"), (35.0, "medium", "cleared")]),
        ("pr_low", [(0, 30, 50)], []),
        ("pr_low", [(0, 30, 45)], [(10.0, "medium", "active")]),
        # The medium level comes due at 10 s too, but the high one is already shown.
        ("pr_low", [(0, 30, 38)], [(5.0, "high", "active")]),
        # Latched: back to 70, the high stays shown until acknowledged.
        ("pr_low", [(0, 10, 38), (10, 30, 70)],
         [(5.0, "high", "active"), (15.0, "high", "latched")]),
        # No value (HR 511 on a Nonin): neither raises nor clears.
        ("pr_low", [(0, 8, 45), (8, 30, None), (30, 33, 45)], [(32.0, "medium", "active")]),
    ],
)  # fmt: skip
def test_pulse_rate_rules(alarm_id, series, expected):
    assert brief(feed_pr(engine(), series), alarm_id) == expected


# --- acknowledgement ----------------------------------------------------------------------


def test_acknowledging_a_latched_alarm_clears_it():
    eng = engine()
    run(eng, steady(0, 5, 84) + steady(5, 20, 97))
    assert eng.showing("spo2_low") == (Priority.HIGH, AlarmState.LATCHED)
    assert brief(eng.acknowledge(21.0, "spo2_low")) == [(21.0, "high", "cleared")]
    assert eng.showing("spo2_low") is None
    # A new drop is a new occurrence.
    assert brief(run(eng, steady(30, 31, 84))) == [(30.0, "high", "active")]


def test_acknowledging_an_active_alarm_keeps_it_shown():
    """The visual indication lasts while the condition does; only audio is acknowledged."""
    eng = engine()
    run(eng, steady(0, 20, 88))
    assert eng.acknowledge(20.5, "spo2_low") == []
    assert eng.showing("spo2_low") == (Priority.MEDIUM, AlarmState.ACTIVE)


def test_acknowledging_a_latched_device_lost_rearms_the_watch():
    eng = engine()
    eng.set_phase(0.0, Phase.ONSET)
    run(eng, steady(0, 1, 97))
    eng.advance(40.0)
    run(eng, steady(40, 41, 97))
    assert eng.showing("device_lost") == (Priority.HIGH, AlarmState.LATCHED)
    assert brief(eng.acknowledge(41.0, "device_lost"), "device_lost") == [
        (41.0, "high", "cleared")]  # fmt: skip
    assert eng.next_due() == 45.0  # watching for silence again from the last frame
