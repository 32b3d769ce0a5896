"""The signal layer (acknowledge, pause, escalation) and discharge readiness, on plain calls."""

from __future__ import annotations

from sessiond.config import AlarmsConfig, Config, LimitAlarmConfig, LimitLevel
from sessiond.model import (
    AlarmTransition,
    AudioPause,
    DischargeReadiness,
    Event,
    Quality,
    Reading,
    Route,
)
from sessiond.session.monitor import Monitor


def monitor(config: Config | None = None) -> Monitor:
    return Monitor(config=config or Config(), streaming=["spo2"], nibp=["nibp"])


def oximetry(m: Monitor, start: int, stop: int, spo2: int, pr: int = 70, **kw) -> list[Event]:
    out: list[Event] = []
    for k in range(start, stop):
        out += m.advance(float(k))
        out += m.on_reading(Reading(t=float(k), device="spo2", spo2=spo2, pr=pr, **kw))
    return out


def bp(m: Monitor, t: float, sys: int, dia: int) -> list[Event]:
    return m.advance(t) + m.on_reading(Reading(t=t, device="nibp", sys=sys, dia=dia))


def transitions(events: list[Event], alarm_id: str) -> list[tuple[float, str, str]]:
    return [
        (e.t, e.priority.label, e.state.value)
        for e in events
        if isinstance(e, AlarmTransition) and e.alarm_id == alarm_id
    ]


def pauses(events: list[Event]) -> list[tuple[float, bool, str]]:
    return [(e.t, e.paused, e.reason) for e in events if isinstance(e, AudioPause)]


def start(m: Monitor) -> None:
    m.start_session(0.0, session_id="s", route=Route.IV, user="ana", source="test")


# --- Audio pause -------------------------------------------------------------------------


def test_pause_lasts_two_minutes():
    m = monitor()
    start(m)
    out = m.pause_audio(10.0, user="ana", source="console")
    assert pauses(out) == [(10.0, True, "nurse")]
    assert m.alarms.paused_until == 130.0
    out = oximetry(m, 10, 140, 97)
    assert pauses(out) == [(130.0, False, "timeout")]


def test_a_new_high_alarm_ends_the_pause_a_medium_does_not():
    m = monitor()
    start(m)
    m.pause_audio(0.0, user="ana", source="console")
    out = oximetry(m, 0, 20, 88)  # medium after 15 s: the pause holds
    assert transitions(out, "spo2_low") == [(15.0, "medium", "active")]
    assert pauses(out) == []
    out = oximetry(m, 20, 22, 80)  # high at once: the pause ends with it
    assert transitions(out, "spo2_low") == [(20.0, "high", "active")]
    assert pauses(out) == [(20.0, False, "high alarm spo2_low")]
    assert m.alarms.paused_until is None


# --- Acknowledge and escalation ------------------------------------------------------------


def escalating() -> Config:
    spo2_low = LimitAlarmConfig(
        medium=LimitLevel(limit=90, delay_s=15),
        high=LimitLevel(limit=85, delay_s=0, latched=True),
        hysteresis=1,
        escalate_after_s=120,
    )
    return Config(alarms=AlarmsConfig(spo2_low=spo2_low))


def test_no_escalation_by_default():
    m = monitor()
    start(m)
    out = oximetry(m, 0, 400, 88)
    assert transitions(out, "spo2_low") == [(15.0, "medium", "active")]


def test_an_unacknowledged_medium_escalates_to_high():
    m = monitor(escalating())
    start(m)
    out = oximetry(m, 0, 200, 88)
    assert transitions(out, "spo2_low") == [(15.0, "medium", "active"), (135.0, "high", "active")]
    out = oximetry(m, 200, 210, 97)  # it ends as the occurrence it was: high
    assert transitions(out, "spo2_low") == [(205.0, "high", "cleared")]


def test_an_acknowledged_medium_does_not_escalate():
    m = monitor(escalating())
    start(m)
    oximetry(m, 0, 30, 88)
    m.acknowledge(30.0, alarm_id="spo2_low", user="ana", source="console")
    assert "spo2_low" in m.alarms.acknowledged
    out = oximetry(m, 30, 300, 88)
    assert transitions(out, "spo2_low") == []
    out = oximetry(m, 300, 310, 97) + oximetry(m, 310, 340, 88)  # a new occurrence sounds
    assert "spo2_low" not in m.alarms.acknowledged
    assert transitions(out, "spo2_low") == [
        (305.0, "medium", "cleared"),
        (325.0, "medium", "active"),
    ]


# --- Discharge readiness -----------------------------------------------------------------


def readiness(events: list[Event]) -> list[tuple[float, bool, tuple[str, ...]]]:
    return [(e.t, e.ready, e.unmet) for e in events if isinstance(e, DischargeReadiness)]


def dosed_session(m: Monitor) -> None:
    start(m)
    bp(m, 10.0, 120, 80)
    oximetry(m, 11, 300, 97, pr=70)
    bp(m, 300.0, 124, 82)
    m.advance(300.0)
    m.mark_dose(300.0, user="ana", source="test")


def test_ready_two_hours_after_the_dose_when_all_criteria_hold():
    m = monitor()
    dosed_session(m)
    out = oximetry(m, 300, 300 + 7200 + 10, 97, pr=72)
    out += bp(m, 7400.0, 130, 85)  # within 20 % of 122/81
    out += oximetry(m, 7510, 7520, 97, pr=72)
    assert readiness(out) == [(7500.0, True, ())]


def test_not_ready_with_a_bp_far_from_baseline_then_ready_when_it_settles():
    m = monitor()
    dosed_session(m)
    out = oximetry(m, 300, 7000, 97, pr=72)
    out += bp(m, 7000.0, 150, 90)  # 150 > 122 * 1.2
    out += oximetry(m, 7000, 7700, 97, pr=72)
    assert readiness(out) == []
    out = bp(m, 7700.0, 128, 84)
    assert readiness(out) == [(7700.0, True, ())]


def test_a_low_spo2_restarts_the_window_and_an_alarm_blocks_readiness():
    m = monitor()
    dosed_session(m)
    oximetry(m, 300, 7000, 97)
    bp(m, 7000.0, 125, 80)
    out = oximetry(m, 7000, 7490, 97) + oximetry(m, 7490, 7495, 91) + oximetry(m, 7495, 7900, 97)
    # SpO2 below 92 % at 7494: five clean minutes from 7495.
    assert readiness(out) == [(7795.0, True, ())]
    out = oximetry(m, 7900, 7920, 80)  # spo2_low high: not ready any more
    assert readiness(out)[0][:2] == (7900.0, False)
    assert "alarm shown" in readiness(out)[0][2]


def test_sensor_off_counts_as_no_spo2():
    m = monitor()
    dosed_session(m)
    oximetry(m, 300, 7000, 97)
    bp(m, 7000.0, 125, 80)
    out = oximetry(m, 7000, 7400, 97) + oximetry(m, 7400, 7402, 97, flags=Quality.SENSOR_OFF)
    out += oximetry(m, 7402, 7650, 97)
    assert readiness(out) == []  # 5 minutes from 7402 is 7702
