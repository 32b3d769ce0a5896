"""Alarms that cannot be silently missed: latches, acknowledgements, missing values, values
carried by events, technical clears, and property tests over the engine, on virtual time."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessiond.config import Config
from sessiond.devices.contec import ContecLegacyDecoder, ContecV7Decoder
from sessiond.model import (
    AlarmState,
    AlarmTransition,
    Event,
    Phase,
    Priority,
    Quality,
    Reading,
    Route,
)
from sessiond.session.alarms import AlarmEngine
from sessiond.session.monitor import Monitor
from tests.test_contec import legacy_packet, v7_packet


def engine() -> AlarmEngine:
    return AlarmEngine(config=Config().alarms, streaming=["spo2"])


def oximetry(
    eng: AlarmEngine,
    start: float,
    /,
    stop: float,
    spo2: int | None,
    *,
    pr: int | None = 72,
    flags: Quality = Quality.NONE,
) -> list[Event]:
    out: list[Event] = []
    t = start
    while t < stop:
        out += eng.advance(t)
        out += eng.on_reading(Reading(t=t, device="spo2", spo2=spo2, pr=pr, flags=flags))
        t += 1.0
    return out


def shown(events: list[Event], alarm_id: str) -> list[tuple[Any, ...]]:
    return [
        (e.t, e.priority.label, e.state.value, e.value, e.limit)
        for e in events
        if isinstance(e, AlarmTransition) and e.alarm_id == alarm_id
    ]


# --- a latch never hides a new violation (clinical.md §5.1: LATCHED → violating → ACTIVE) ---


def test_a_new_desaturation_after_a_latched_high_is_shown_active():
    """SpO2 84 for 5 s latches high; a later 88 % for 200 s must be seen, not hidden."""
    eng = engine()
    out = oximetry(eng, 0, 5, 84) + oximetry(eng, 5, 60, 97)
    assert shown(out, "spo2_low") == [
        (0.0, "high", "active", 84, 85),
        (10.0, "high", "latched", None, None),
    ]
    out = oximetry(eng, 60, 260, 88) + oximetry(eng, 260, 280, 97)
    # Shown active again after the medium delay, with its own value and limit, and the
    # latched high stays visible until acknowledged.
    assert shown(out, "spo2_low") == [
        (75.0, "high", "active", 88, 90),
        (265.0, "high", "latched", None, None),
    ]
    assert "spo2_low" not in eng.acknowledged  # a new violation sounds again


def test_a_latched_pr_low_shows_a_new_bradycardia():
    eng = engine()
    out = oximetry(eng, 0, 10, 97, pr=38) + oximetry(eng, 10, 40, 97, pr=70)
    assert shown(out, "pr_low")[-1][:3] == (15.0, "high", "latched")
    out = oximetry(eng, 40, 80, 97, pr=45)
    assert shown(out, "pr_low") == [(50.0, "high", "active", 45, 50)]


def test_a_second_device_loss_after_a_latched_high_is_shown():
    eng = engine()
    eng.set_phase(0.0, Phase.ONSET)
    oximetry(eng, 0, 1, 97)
    out = eng.advance(40.0) + oximetry(eng, 40, 41, 97)
    assert shown(out, "device_lost")[-1][:3] == (40.0, "high", "latched")
    out = eng.advance(100.0)
    # Lost again: active at once when the medium level comes on (5 s), not hidden by the latch.
    assert shown(out, "device_lost")[0][:3] == (45.0, "high", "active")
    (event,) = [e for e in out if isinstance(e, AlarmTransition)][:1]
    assert event.device == "spo2"


def test_a_latched_bp_high_shows_a_new_high_reading():
    m = bp_monitor()
    out = bp(m, 1000.0, 205, 100) + bp(m, 1100.0, 130, 80) + m.advance(1110.0)
    assert [a[1:3] for a in shown(out, "bp_high")] == [("high", "active"), ("high", "latched")]
    out = bp(m, 1200.0, 165, 95)
    assert shown(out, "bp_high") == [(1200.0, "high", "active", 165, 160)]


# --- an acknowledgement given while the condition lasts covers its end ----------------------


def test_an_alarm_acknowledged_while_active_clears_when_its_condition_ends():
    """Acknowledged at 161 while SpO2 is still 80: when it recovers, it clears, not latches."""
    eng = engine()
    out = oximetry(eng, 0, 162, 80)
    out += eng.acknowledge(161.5, "spo2_low")
    out += oximetry(eng, 162, 230, 98)
    assert [s[2] for s in shown(out, "spo2_low")] == ["active", "cleared"]
    assert eng.showing("spo2_low") is None


def test_an_acknowledged_device_loss_clears_when_the_device_is_back():
    eng = engine()
    eng.set_phase(0.0, Phase.ONSET)
    oximetry(eng, 0, 1, 97)
    eng.advance(40.0)
    out = eng.acknowledge(40.0, "device_lost") + oximetry(eng, 41, 42, 97)
    assert shown(out, "device_lost")[-1][:3] == (41.0, "high", "cleared")


def test_an_acknowledged_latching_pr_low_and_bp_high_clear_too():
    eng = engine()
    oximetry(eng, 0, 10, 97, pr=38)
    eng.acknowledge(9.5, "pr_low")
    out = oximetry(eng, 10, 30, 97, pr=70)
    assert shown(out, "pr_low")[-1][2] == "cleared"
    m = bp_monitor()
    bp(m, 1000.0, 205, 100)
    m.acknowledge(1001.0, alarm_id="bp_high", user="ana", source="test")
    out = bp(m, 1100.0, 130, 80) + m.advance(1110.0)
    assert [a[2] for a in shown(out, "bp_high")] == ["cleared"]


def test_no_state_exists_that_no_action_and_no_reading_can_leave():
    """After any acknowledgement, good readings (and at most one more acknowledgement)
    always bring the alarm back to nothing shown."""
    for ack_at in (0.5, 3.5, 8.5, 12.5):
        eng = engine()
        oximetry(eng, 0, 5, 80)
        eng.acknowledge(ack_at, "spo2_low")
        oximetry(eng, 5, 30, 98)
        if eng.showing("spo2_low") is not None:
            eng.acknowledge(30.0, "spo2_low")
        assert eng.showing("spo2_low") is None, ack_at


# --- SpO2 missing while the pulse is valid: sensor_off (DESIGN §5) ---------------------------


@pytest.mark.parametrize(
    ("spo2", "pr", "flags"),
    [
        (None, 80, Quality.NONE),  # Masimo `SPO2=---%` with a BPM; Nonin SpO2 127 with HR
        (None, None, Quality.NONE),  # all dashes
        (None, 80, Quality.SENSOR_OFF),
        (None, None, Quality.NO_SENSOR),
    ],
)
def test_no_spo2_value_is_sensor_off_after_five_seconds(spo2, pr, flags):
    eng = engine()
    out = oximetry(eng, 0, 10, 97) + oximetry(eng, 10, 30, spo2, pr=pr, flags=flags)
    out += oximetry(eng, 30, 31, 97)
    assert [s[:3] for s in shown(out, "sensor_off")] == [
        (15.0, "medium", "active"),
        (30.0, "medium", "cleared"),
    ]
    assert shown(out, "device_lost") == []  # frames keep coming: connected


def test_a_valid_pulse_without_spo2_still_raises_pr_alarms():
    eng = engine()
    out = oximetry(eng, 0, 20, None, pr=150)
    assert ("pr_high", "high") in [
        (e.alarm_id, e.priority.label) for e in out if isinstance(e, AlarmTransition)
    ]


@pytest.mark.parametrize(
    ("decoder", "packet"),
    [
        (ContecV7Decoder, v7_packet(spo2=127, pr=127)),
        (ContecLegacyDecoder, legacy_packet(spo2=127, pr=127)),
        (ContecV7Decoder, v7_packet(spo2=127, pr=0)),
        (ContecLegacyDecoder, legacy_packet(spo2=127, pr=0)),
    ],
)
def test_contec_no_reading_pattern_is_no_value_not_a_pulse_rate(decoder, packet):
    """PR 127 / SpO2 127 without the finger-out bit: no value, never `pr_high`."""
    readings = decoder(device="spo2").feed(packet * 120, 0.0)
    assert {(r.spo2, r.pr) for r in readings} == {(None, None)}
    eng = engine()
    out: list[Event] = []
    for k in range(30):
        t = float(k)
        out += eng.advance(t)
        for r in readings[:1]:
            out += eng.on_reading(Reading(t=t, device="spo2", spo2=r.spo2, pr=r.pr))
    ids = {e.alarm_id for e in out if isinstance(e, AlarmTransition)}
    assert ids == {"sensor_off"}


def test_contec_spo2_missing_with_a_real_pulse_rate_keeps_the_pulse():
    (reading,) = ContecLegacyDecoder(device="spo2").feed(legacy_packet(spo2=127, pr=80), 0.0)
    assert (reading.spo2, reading.pr) == (None, 80)


# --- each event carries the value and limit that hold at its transition ---------------------


def test_falling_back_to_medium_carries_the_value_of_now():
    """PR 141 then 130: the medium `active` event says 130, not 141."""
    eng = engine()
    out = oximetry(eng, 0, 20, 97, pr=141) + oximetry(eng, 20, 40, 97, pr=130)
    assert shown(out, "pr_high") == [
        (10.0, "high", "active", 141, 140),
        (25.0, "medium", "active", 130, 120),
    ]


def test_bp_low_and_dose_gate_fall_back_with_the_value_of_now():
    m = bp_monitor()
    out = bp(m, 1000.0, 75, 50) + bp(m, 1100.0, 87, 55) + m.advance(1110.0)
    # SYS 87 is past 80 + 5: the high level clears 5 s later and the medium says 87.
    assert shown(out, "bp_low")[-1] == (1105.0, "medium", "active", 87, 90)
    m = Monitor(config=Config(), streaming=["spo2"], nibp=["nibp"])
    m.start_session(0.0, session_id="s", route=Route.IV, user="ana", source="test")
    out = bp(m, 60.0, 190, 100) + bp(m, 360.0, 110, 70) + m.advance(400.0)
    # Baseline so far 190/100 (high), then 150/85: the gate falls to low with 150 > 140.
    assert shown(out, "dose_gate")[-1] == (365.0, "low", "active", 150.0, 140.0)


# --- technical alarms clear as soon as their condition is gone; BP clears after 5 s ----------


def test_nibp_overdue_clears_when_the_next_phase_allows_more_time():
    m = Monitor(config=Config(), streaming=[], nibp=["nibp"])
    m.start_session(0.0, session_id="s", route=Route.IV, user="ana", source="test")
    bp(m, 60.0, 120, 80)
    m.advance(300.0)
    m.mark_dose(300.0, user="ana", source="test")
    bp(m, 310.0, 120, 80)
    # Onset: q10 + 5 min grace → overdue at 310 + 900; the effect window (q15) starts at 2100.
    out = m.advance(1300.0)
    assert [s[:3] for s in shown(out, "nibp_overdue")] == [(1210.0, "medium", "active")]
    # Make the phase change come while it is shown: q15 + 5 = 1200 s after 310 is 1510.
    m2 = Monitor(config=Config(), streaming=[], nibp=["nibp"])
    m2.start_session(0.0, session_id="s", route=Route.IV, user="ana", source="test")
    m2.advance(1.0)
    bp(m2, 1.0, 120, 80)  # baseline q5 + 5 → overdue at 601
    out = m2.advance(700.0)
    assert [s[:3] for s in shown(out, "nibp_overdue")] == [(601.0, "medium", "active")]
    out = m2.mark_dose(700.0, user="ana", source="test", reason="test")  # onset: q10 + 5 = 901
    assert [s[:3] for s in shown(out, "nibp_overdue")] == [(700.0, "medium", "cleared")]


# --- property tests -----------------------------------------------------------------------

Step = tuple[int, bool]  # (SpO2 this second, acknowledge after it)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([70, 80, 84, 86, 88, 89, 90, 91, 95, 98]), st.booleans()),
        min_size=1,
        max_size=120,
    )
)
def test_engine_properties(steps: list[Step]) -> None:
    """A condition held past its delay is always shown; nothing is shown without a condition
    or a latch; the event stream folds to exactly what the engine shows."""
    eng = engine()
    events: list[Event] = []
    below_90_since: float | None = None
    last_critical: float | None = None
    last_ack = -1.0
    history: list[tuple[float, int]] = []
    for k, (spo2, ack) in enumerate(steps):
        t = float(k)
        events += eng.advance(t)
        events += eng.on_reading(Reading(t=t, device="spo2", spo2=spo2, pr=72))
        history.append((t, spo2))
        below_90_since = (
            (below_90_since if below_90_since is not None else t) if spo2 < 90 else None
        )
        if spo2 < 85:
            last_critical = t
        now = eng.showing("spo2_low")
        # Held past its delay: shown.
        if spo2 < 85:
            assert now is not None
            assert now == (Priority.HIGH, AlarmState.ACTIVE)
        if below_90_since is not None and t - below_90_since >= 15:
            assert now is not None
            assert now[1] is AlarmState.ACTIVE
        # Shown only with a condition (a violation within the clear delay) or a latch.
        if now is not None and now[1] is AlarmState.ACTIVE:
            assert any(v < 91 for tv, v in history if tv >= t - 6)
        if now is not None and now[1] is AlarmState.LATCHED:
            assert last_critical is not None
            assert last_ack < last_critical
        if ack and now is not None:
            events += eng.acknowledge(t + 0.5, "spo2_low")
            last_ack = t + 0.5
    # The events say what is shown.
    folded: tuple[Priority, AlarmState] | None = None
    for e in events:
        if isinstance(e, AlarmTransition) and e.alarm_id == "spo2_low":
            folded = None if e.state is AlarmState.CLEARED else (e.priority, e.state)
    assert folded == eng.showing("spo2_low")


# --- helpers --------------------------------------------------------------------------------


def bp_monitor() -> Monitor:
    m = Monitor(config=Config(), streaming=["spo2"], nibp=["nibp"])
    m.start_session(0.0, session_id="s", route=Route.IV, user="ana", source="test")
    bp(m, 60.0, 120, 80)
    bp(m, 360.0, 120, 80)
    m.advance(600.0)
    m.mark_dose(600.0, user="ana", source="test")
    return m


def bp(m: Monitor, t: float, sys: int, dia: int) -> list[Event]:
    out = m.advance(t)
    return out + m.on_reading(Reading(t=t, device="nibp", sys=sys, dia=dia))
