"""A fault in one rule never stops monitoring: it is logged, shown as `monitor_fault`, and the
other rules, the readings and the timer go on (the daemon's vitals path, on its event loop)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from sessiond.app import Daemon
from sessiond.clock import LoopClock
from sessiond.config import Config
from sessiond.model import AlarmState, AlarmTransition, Event, Priority, Reading
from sessiond.room.music import MusicConfig

if TYPE_CHECKING:
    from pathlib import Path


def daemon(tmp_path: Path) -> Daemon:
    config = Config().model_copy(update={"music": MusicConfig(enabled=False)})
    return Daemon(
        config=config,
        clock=LoopClock(),
        device_paths={"spo2": str(tmp_path / "none"), "nibp": str(tmp_path / "none2")},
    )


def drain(sub: object) -> list[Event]:
    out: list[Event] = []
    while (event := sub.get_nowait()) is not None:  # type: ignore[attr-defined]
        out.append(event)
    return out


async def test_a_rule_that_raises_is_shown_and_the_others_go_on(tmp_path, caplog):
    d = daemon(tmp_path)
    sub = d.bus.subscribe("test", maxsize=10_000)
    broken = d.monitor.alarms.spo2_low

    def fail(*_args: object, **_kw: object) -> bool:
        msg = "a bug in one rule"
        raise RuntimeError(msg)

    broken.observe = fail  # type: ignore[method-assign]
    now = d.clock.now()
    with caplog.at_level("ERROR"):
        d._on_readings([Reading(t=now, device="spo2", spo2=97, pr=150)])
    events = drain(sub)
    faults = [e for e in events if isinstance(e, AlarmTransition) and e.alarm_id == "monitor_fault"]
    assert [(f.priority, f.state) for f in faults] == [(Priority.HIGH, AlarmState.ACTIVE)]
    # Logged once, with the rule named; the rule is out of service, not retried per reading.
    assert caplog.text.count("spo2_low failed and is out of service") == 1
    # The reading itself still reached the bus, and the timer is armed for what is due.
    assert any(isinstance(e, Reading) for e in events)
    assert d._timer is not None
    # Later readings: the other rules still judge them (pr_high after its 10 s delay).
    for k in range(1, 12):
        d._on_readings([Reading(t=now + k, device="spo2", spo2=97, pr=150)])
    ids = {e.alarm_id for e in drain(sub) if isinstance(e, AlarmTransition)}
    assert "pr_high" in ids
    assert caplog.text.count("out of service") == 1
    # The fault stays shown until a nurse acknowledges it.
    assert d.monitor.alarms.showing("monitor_fault") == (Priority.HIGH, AlarmState.ACTIVE)
    d.monitor.acknowledge(now + 20, alarm_id="monitor_fault", user="ana", source="test")
    assert d.monitor.alarms.showing("monitor_fault") is None


async def test_a_broken_engine_still_shows_the_fault_and_keeps_the_timer(tmp_path, caplog):
    d = daemon(tmp_path)
    sub = d.bus.subscribe("test", maxsize=10_000)

    def fail(*_args: object, **_kw: object) -> list[Event]:
        msg = "the engine itself"
        raise RuntimeError(msg)

    d.monitor.on_reading = fail  # type: ignore[method-assign]
    d.monitor.report = fail  # type: ignore[method-assign]
    d.monitor.next_due = fail  # type: ignore[assignment,method-assign]
    with caplog.at_level("ERROR"):
        d._on_readings([Reading(t=d.clock.now(), device="spo2", spo2=97, pr=72)])
    faults = [
        e for e in drain(sub) if isinstance(e, AlarmTransition) and e.alarm_id == "monitor_fault"
    ]
    assert faults
    assert faults[0].priority is Priority.HIGH
    # No deadline known: the timer tries again a second later rather than never.
    assert d._timer is not None
    assert d._timer_due == pytest.approx(d.clock.now() + 1.0, abs=0.1)


def test_a_rule_whose_deadline_raises_does_not_stop_the_clock():
    """A rule that fails when its deadline fires is taken out; the others still fire."""
    from sessiond.model import Route  # noqa: PLC0415
    from sessiond.session.monitor import Monitor  # noqa: PLC0415

    m = Monitor(config=Config(), streaming=["spo2"], nibp=["nibp"])
    m.start_session(0.0, session_id="s", route=Route.IV, user="ana", source="test")

    def fail(_now: float) -> None:
        msg = "deadline bug"
        raise RuntimeError(msg)

    m.alarms.pr_high.advance = fail  # type: ignore[method-assign,assignment]
    out: list[Event] = []
    for k in range(30):
        out += m.advance(float(k))
        out += m.on_reading(Reading(t=float(k), device="spo2", spo2=80, pr=150))
    ids = [(e.alarm_id, e.priority) for e in out if isinstance(e, AlarmTransition)]
    assert ("monitor_fault", Priority.HIGH) in ids
    assert ("spo2_low", Priority.HIGH) in ids
    assert [part for part, _ in m.alarms.faults] == ["pr_high"]


def test_a_broken_bp_schedule_leaves_the_alarms_running():
    from sessiond.model import Route  # noqa: PLC0415
    from sessiond.session.monitor import Monitor  # noqa: PLC0415

    m = Monitor(config=Config(), streaming=["spo2"], nibp=["nibp"])
    m.start_session(0.0, session_id="s", route=Route.IV, user="ana", source="test")
    assert m.schedule is not None

    def fail(_now: float) -> list[Event]:
        msg = "schedule bug"
        raise RuntimeError(msg)

    m.schedule.advance = fail  # type: ignore[method-assign,assignment]
    out = m.advance(20.0)  # no oximeter frame since 0: device_lost at 5 s
    ids = [e.alarm_id for e in out if isinstance(e, AlarmTransition)]
    assert ids == ["monitor_fault", "device_lost"]
    assert m.schedule is None
