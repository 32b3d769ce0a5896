"""BP rules, the BP schedule, baseline and dose gate, on the monitor with plain calls."""

from __future__ import annotations

import pytest

from sessiond.config import Config
from sessiond.model import (
    AlarmTransition,
    BaselineCaptured,
    DeviceStatus,
    DischargeReadiness,
    Event,
    NibpRequest,
    NurseAction,
    Quality,
    Reading,
    Route,
)
from sessiond.session.commands import CommandRejected
from sessiond.session.monitor import Monitor
from sessiond.session.state import OpenSession


def monitor(config: Config | None = None) -> Monitor:
    return Monitor(config=config or Config(), streaming=["spo2"], nibp=["nibp"])


def session(m: Monitor, t: float = 0.0) -> list[Event]:
    return m.start_session(t, session_id="s", route=Route.IV, user="ana", source="test")


def bp(m: Monitor, t: float, sys: int | None, dia: int | None, **kw) -> list[Event]:
    out = m.advance(t)
    return out + m.on_reading(Reading(t=t, device="nibp", sys=sys, dia=dia, **kw))


def alarms(events: list[Event], alarm_id: str | None = None) -> list[tuple[object, ...]]:
    return [
        (e.t, e.alarm_id, e.priority.label, e.state.value, e.value, e.limit)
        for e in events
        if isinstance(e, AlarmTransition) and (alarm_id is None or e.alarm_id == alarm_id)
    ]


def requests(events: list[Event]) -> list[tuple[float, str]]:
    return [(e.t, e.reason) for e in events if isinstance(e, NibpRequest)]


def dosed(m: Monitor, baseline: tuple[int, int] = (120, 80), dose_t: float = 600.0) -> None:
    session(m)
    bp(m, 60.0, *baseline)
    bp(m, 360.0, *baseline)
    m.advance(dose_t)
    m.mark_dose(dose_t, user="ana", source="test")


# --- bp_high ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("readings", "expected"),
    [
        ([(159, 99)], []),  # just below both medium limits
        ([(160, 80)], [("medium", "active", 160.0, 160.0)]),  # SYS at the limit
        ([(130, 100)], [("medium", "active", 100.0, 100.0)]),  # DIA at the limit
        ([(185, 90)], [("medium", "active", 185.0, 160.0)]),  # one high reading: medium only
        (
            [(185, 90), (182, 95)],  # confirmed by a second reading
            [("medium", "active", 185.0, 160.0), ("high", "active", 182.0, 180.0)],
        ),
        ([(150, 112), (150, 111)],
         [("medium", "active", 112.0, 100.0), ("high", "active", 111.0, 110.0)]),
        ([(201, 90)], [("high", "active", 201.0, 200.0)]),  # critical: at once
        ([(150, 120)], [("high", "active", 120.0, 120.0)]),
        ([(185, 90), (150, 90), (185, 90)],  # not consecutive: never high
         [("medium", "active", 185.0, 160.0), ("medium", "cleared", None, None),
          ("medium", "active", 185.0, 160.0)]),
    ],
)  # fmt: skip
def test_bp_high_levels(readings, expected):
    m = monitor()
    dosed(m)
    out = []
    for k, (s, d) in enumerate(readings):
        out += bp(m, 1000.0 + 60 * k, s, d)
    assert [a[2:] for a in alarms(out, "bp_high")] == expected


def test_bp_high_high_is_latched_and_medium_clears_with_hysteresis():
    m = monitor()
    dosed(m)
    out = bp(m, 1000.0, 205, 100)
    # Below 175/105 by the hysteresis: the high level latches 5 s later; but 156 is below 160
    # without the 5 mmHg margin, so the medium condition holds and the alarm stays active.
    out += bp(m, 1100.0, 156, 90)
    out += bp(m, 1200.0, 150, 90)  # inside with the margin: latched 5 s later
    out += m.advance(1210.0)
    assert [a[:4] for a in alarms(out, "bp_high")] == [
        (1000.0, "bp_high", "high", "active"),
        (1205.0, "bp_high", "high", "latched"),
    ]
    out = m.acknowledge(1300.0, alarm_id="bp_high", user="ana", source="test")
    assert [a[:4] for a in alarms(out, "bp_high")] == [(1300.0, "bp_high", "high", "cleared")]


def test_a_failed_measurement_neither_raises_nor_clears_bp_alarms():
    m = monitor()
    dosed(m)
    bp(m, 1000.0, 165, 90)
    out = bp(m, 1100.0, None, None, flags=Quality.ARTIFACT)
    assert alarms(out, "bp_high") == []
    assert m.alarms.showing("bp_high") is not None


# --- bp_low, bp_rise -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sys", "expected"),
    [(90, []), (89, [("medium", "active", 89.0, 90.0)]), (79, [("high", "active", 79.0, 80.0)])],
)
def test_bp_low(sys, expected):
    m = monitor()
    dosed(m)
    out = bp(m, 1000.0, sys, 60)
    assert [a[2:] for a in alarms(out, "bp_low")] == expected


def test_bp_low_clears_only_past_the_hysteresis():
    """93 is not past 90 + 5; 95 is, and clears once held for `clear_delay_s` (DESIGN §5)."""
    m = monitor()
    dosed(m)
    out = bp(m, 1000.0, 85, 60) + bp(m, 1100.0, 93, 60) + bp(m, 1200.0, 95, 60)
    out += m.advance(1210.0)
    # Back past 90 + 5 at 1200; cleared once that has held 5 s (DESIGN §5).
    assert [a[:4] for a in alarms(out, "bp_low")] == [
        (1000.0, "bp_low", "medium", "active"),
        (1205.0, "bp_low", "medium", "cleared"),
    ]


@pytest.mark.parametrize(
    ("reading", "expected"),
    [
        ((139, 104), []),  # +39 / +24 from 100/80
        ((140, 90), [("medium", "active", 140.0, 140.0)]),  # SYS +40
        ((120, 105), [("medium", "active", 105.0, 105.0)]),  # DIA +25
    ],
)
def test_bp_rise_is_relative_to_the_baseline(reading, expected):
    m = monitor()
    dosed(m, baseline=(100, 80))
    out = bp(m, 1000.0, *reading)
    assert [a[2:] for a in alarms(out, "bp_rise")] == expected


def test_bp_rise_needs_the_dose():
    m = monitor()
    session(m)
    bp(m, 60.0, 100, 70)
    out = bp(m, 360.0, 145, 70)  # +45 before the dose: the gate's business, not bp_rise
    assert alarms(out, "bp_rise") == []


# --- baseline and dose gate --------------------------------------------------------------


def test_baseline_is_the_mean_of_the_last_two_bp_and_median_oximetry():
    m = monitor()
    session(m)
    for t, (s, d) in zip((60.0, 360.0, 500.0), ((150, 95), (130, 84), (126, 80)), strict=True):
        bp(m, t, s, d)
    # 10 minutes of oximetry; only the last 5 before the dose count.
    for k in range(600):
        t = float(k)
        m.advance(t)
        spo2, pr = (90, 100) if k < 290 else (97 + k % 2, 70)
        m.on_reading(Reading(t=t, device="spo2", spo2=spo2, pr=pr))
    out = m.mark_dose(600.0, user="ana", source="test")
    (baseline,) = [e for e in out if isinstance(e, BaselineCaptured)]
    assert (baseline.sys, baseline.dia) == (128.0, 82.0)
    assert (baseline.spo2, baseline.pr) == (97.5, 70.0)


@pytest.mark.parametrize(
    ("readings", "expected"),
    [
        ([(140, 90)], []),  # at the advisory limits is not above them
        ([(141, 80)], [("low", "active", 141.0, 140.0)]),
        ([(130, 91)], [("low", "active", 91.0, 90.0)]),
        # The mean of the two is 135/82.5: back inside by the 5 mmHg hysteresis.
        ([(150, 95), (120, 70)], [("low", "active", 150.0, 140.0),
                                  ("low", "cleared", None, None)]),
        # Still above with the hysteresis (mean 140/87.5): stays.
        ([(150, 95), (130, 80)], [("low", "active", 150.0, 140.0)]),
        # Both levels at once: the gate shows its top one.
        ([(185, 100)], [("high", "active", 185.0, 180.0)]),
    ],
)  # fmt: skip
def test_dose_gate_on_the_baseline_so_far(readings, expected):
    m = monitor()
    session(m)
    out = []
    for k, (s, d) in enumerate(readings):
        out += bp(m, 60.0 + 300 * k, s, d)
    out += m.advance(60.0 + 300 * len(readings))  # a clear holds 5 s before it is one
    assert [a[2:] for a in alarms(out, "dose_gate")] == expected


def test_a_closed_dose_gate_needs_a_reason_and_the_dose_ends_it():
    m = monitor()
    session(m)
    out = bp(m, 60.0, 190, 100) + bp(m, 360.0, 186, 104)
    assert alarms(out, "dose_gate")[-1][2:4] == ("high", "active")
    with pytest.raises(CommandRejected, match=r"dose_gate is high \(baseline 188/102 mmHg\)"):
        m.mark_dose(600.0, user="ana", source="console")
    with pytest.raises(CommandRejected, match="override with a reason"):
        m.mark_dose(600.0, user="ana", source="console", reason="   ")
    assert m.timeline.dose_t is None  # the refusals changed nothing
    out = m.mark_dose(600.0, user="ana", source="console", reason="prescriber approved")
    dose = next(e for e in out if isinstance(e, NurseAction))
    assert dose.detail == {"override_reason": "prescriber approved"}
    assert [a[2:4] for a in alarms(out, "dose_gate")] == [("high", "cleared")]


def test_an_open_gate_doses_without_a_reason():
    m = monitor()
    session(m)
    bp(m, 60.0, 145, 85)  # low advisory only
    out = m.mark_dose(600.0, user="ana", source="console")
    assert next(e for e in out if isinstance(e, NurseAction)).detail == {}


# --- BP schedule, nibp_overdue, nibp_error, device_lost ------------------------------------


def test_the_bp_schedule_of_a_whole_session():
    """Baseline q5 from the start, q10 in onset, the forced +40 min, q15, q30, nothing ended."""
    m = monitor()
    out = session(m)
    out += m.advance(600.0)
    out += m.mark_dose(600.0, user="ana", source="test")
    out += m.advance(600.0 + 200 * 60)
    out += m.end_session(600.0 + 200 * 60, user="ana", source="test")
    out += m.advance(600.0 + 400 * 60)
    got = [(round((t - 600.0) / 60, 2), reason) for t, reason in requests(out)]
    assert got == [
        (-10.0, "session start"), (-5.0, "schedule"), (0.0, "schedule"),
        (10.0, "schedule"), (20.0, "schedule"), (30.0, "schedule"), (40.0, "after dose"),
        (55.0, "schedule"), (70.0, "schedule"), (85.0, "schedule"), (100.0, "schedule"),
        (115.0, "schedule"), (130.0, "schedule"), (145.0, "schedule"), (175.0, "schedule"),
    ]  # fmt: skip


def test_a_valid_reading_resets_the_interval_and_the_overdue_clock():
    m = monitor()
    session(m)
    out = bp(m, 100.0, 120, 80)  # 100 s after the request at 0
    out += m.advance(399.0)
    assert requests(out) == []
    out += m.advance(400.0)
    assert requests(out) == [(400.0, "schedule")]
    # No reading since 100 s: overdue at 100 + 5 min interval + 5 min grace.
    out = m.advance(699.9)
    assert alarms(out, "nibp_overdue") == []
    out = m.advance(701.0)
    assert [a[:4] for a in alarms(out, "nibp_overdue")] == [
        (700.0, "nibp_overdue", "medium", "active")
    ]
    out = bp(m, 800.0, 118, 79)
    assert [a[:4] for a in alarms(out, "nibp_overdue")] == [
        (800.0, "nibp_overdue", "medium", "cleared")
    ]


def test_a_bp_alarm_asks_for_a_confirming_reading_at_once():
    m = monitor()
    dosed(m)
    out = bp(m, 1000.0, 170, 90)
    assert (1000.0, "bp_high alarm") in requests(out)
    out = bp(m, 1040.0, 171, 90)  # still medium: no new request
    assert requests(out) == []


def test_nibp_error_escalates_on_the_second_failure_in_onset():
    m = monitor()
    dosed(m)
    out = bp(m, 1000.0, None, None, flags=Quality.ARTIFACT)
    out += m.nibp_failed(1100.0)  # the link: no result in time
    out += bp(m, 1200.0, 120, 80)
    assert [a[:4] for a in alarms(out)] == [
        (1000.0, "nibp_error", "low", "active"),
        (1100.0, "nibp_error", "medium", "active"),
        (1200.0, "nibp_error", "medium", "cleared"),
    ]


def test_nibp_error_stays_low_in_baseline():
    m = monitor()
    session(m)
    out = bp(m, 100.0, None, None) + bp(m, 200.0, None, None)
    assert [a[:4] for a in alarms(out, "nibp_error")] == [(100.0, "nibp_error", "low", "active")]


def test_the_bp_module_is_lost_when_its_link_says_so_not_by_silence():
    m = Monitor(config=Config(), streaming=[], nibp=["nibp"])
    session(m)
    assert alarms(m.advance(250.0), "device_lost") == []  # silence is normal for it
    lost = DeviceStatus(t=260.0, device="nibp", connected=False, detail="no answer")
    out = m.device_status(lost)
    assert [a[:4] for a in alarms(out)] == [(260.0, "device_lost", "medium", "active")]
    out = m.device_status(DeviceStatus(t=270.0, device="nibp", connected=True))
    assert [a[:4] for a in alarms(out)] == [(270.0, "device_lost", "medium", "cleared")]


def test_measure_now_is_a_recorded_request():
    m = monitor()
    session(m)
    out = m.measure_nibp(30.0, user="ana", source="console")
    assert isinstance(out[0], NurseAction)
    assert requests(out) == [(30.0, "nurse")]
    without = Monitor(config=Config(), streaming=["spo2"])
    with pytest.raises(CommandRejected, match="no BP monitor"):
        without.measure_nibp(0.0, user="ana", source="console")


def test_a_resumed_dosed_session_keeps_its_baseline_for_bp_rise():
    m = monitor()
    base = BaselineCaptured(t=600.0, sys=110.0, dia=70.0, spo2=97.0, pr=70.0)
    session = OpenSession(session_id="s", route=Route.IV, started_by="ana", started_t=0.0,
                          resume_t=2000.0, dose_t=600.0, baseline=base)  # fmt: skip
    out = m.resume(2000.0, session=session)
    assert base in out  # shown again after the restart
    out = bp(m, 2100.0, 150, 80)  # +40 over the recorded baseline
    assert [a[1:4] for a in alarms(out, "bp_rise")] == [("bp_rise", "medium", "active")]


def test_a_whole_three_hour_session_with_bp_on_virtual_time():
    """Three hours: 1 Hz oximetry, every BP request answered 40 s later, discharge ready."""
    m = monitor()
    out = session(m)
    pending: list[float] = [t + 40.0 for t, _ in requests(out)]
    for second in range(3 * 3600):
        t = float(second)
        step = m.advance(t)
        if second == 600:
            step += m.mark_dose(t, user="ana", source="test")
        pending += [r + 40.0 for r, _ in requests(step)]
        out += step
        out += m.on_reading(Reading(t=t, device="spo2", spo2=97, pr=72))
        if pending and pending[0] <= t:
            pending.pop(0)
            out += m.on_reading(Reading(t=t, device="nibp", sys=124, dia=78, map=93, pr=72))
    assert alarms(out) == []
    got = requests(out)
    # Two baseline readings 5 min apart, then q10 from each reading, the forced dose + 40,
    # q15 in the effect window; recovery's q30 is not due before the end.
    assert got == [(0.0, "session start"), (340.0, "schedule"), (980.0, "schedule"),
                   (1620.0, "schedule"), (2260.0, "schedule"), (3000.0, "after dose"),
                   (3940.0, "schedule"), (4880.0, "schedule"), (5820.0, "schedule"),
                   (6760.0, "schedule"), (7700.0, "schedule"), (8640.0, "schedule"),
                   (9580.0, "schedule")]  # fmt: skip
    ready = [(e.t, e.ready) for e in out if isinstance(e, DischargeReadiness)]
    assert ready == [(600.0 + 120 * 60, True)]
    times = [e.t for e in out]
    assert times == sorted(times)
