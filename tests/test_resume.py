"""A restart forgets nothing: the record is read back and the session resumes as it was shown.

The record is written by the real recorder (SQLite on disk) from a real monitor's events on
virtual time; a second monitor resumes from what `load_open_session` reads back.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import TYPE_CHECKING, Self

import pytest

from sessiond.bus import Bus
from sessiond.clock import VirtualClock
from sessiond.config import Config
from sessiond.model import (
    AlarmState,
    AlarmTransition,
    AudioPause,
    Event,
    NibpRequest,
    NurseAction,
    Phase,
    Priority,
    Reading,
    RecordGap,
    Route,
)
from sessiond.records.store import Recorder
from sessiond.session.commands import CommandRejected
from sessiond.session.monitor import Monitor

if TYPE_CHECKING:
    from pathlib import Path

    from sessiond.session.state import OpenSession


def new_monitor() -> Monitor:
    return Monitor(config=Config(), streaming=["spo2"], nibp=["nibp"])


class Room:
    """A monitor whose events go through a bus to the real recorder, on a virtual clock."""

    def __init__(self, path: Path) -> None:
        self.clock = VirtualClock()
        self.bus = Bus()
        self.monitor = new_monitor()
        self.recorder = Recorder(path=path, clock=self.clock, room_id="room-1")
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self.recorder.open()
        sub = self.bus.subscribe("rec", maxsize=10_000)
        self._task = asyncio.create_task(self.recorder.run(sub))
        await asyncio.sleep(0)  # the recorder takes its subscription: sync() waits on it
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.bus.close()
        assert self._task is not None
        await self._task
        await self.recorder.close()

    def emit(self, events: list[Event]) -> list[Event]:
        for event in events:
            self.bus.publish(event)
        return events

    def at(self, t: float) -> list[Event]:
        self.clock.t = t
        return self.emit(self.monitor.advance(t))

    def oximetry(self, start: float, stop: float, spo2: int, pr: int = 72) -> None:
        t = start
        while t < stop:
            self.at(t)
            reading = Reading(t=t, device="spo2", spo2=spo2, pr=pr)
            self.bus.publish(reading)
            self.emit(self.monitor.on_reading(reading))
            t += 1.0

    def bp(self, t: float, sys: int, dia: int) -> list[Event]:
        out = self.at(t)
        reading = Reading(t=t, device="nibp", sys=sys, dia=dia, map=(sys + 2 * dia) // 3)
        self.bus.publish(reading)
        return out + self.emit(self.monitor.on_reading(reading))

    async def reopen(self, now: float) -> OpenSession:
        """What a restarted daemon reads back at `now`."""
        await self.recorder.sync()
        self.clock.t = now
        session = await self.recorder.open_session(
            max_age_s=24 * 3600.0,
            baseline_window_s=300.0,
            nibp_devices=frozenset({"nibp"}),
        )
        assert session is not None
        return session


def alarms(events: list[Event]) -> dict[str, AlarmTransition]:
    return {e.alarm_id: e for e in events if isinstance(e, AlarmTransition)}


async def test_a_closed_dose_gate_a_latch_and_a_pause_survive_a_crash(tmp_path):
    """kill -9 with dose_gate high (195/118), a latched desaturation and a running pause."""
    async with Room(tmp_path / "r.sqlite") as room:
        m = room.monitor
        room.emit(m.start_session(0.0, session_id="s1", route=Route.IV, user="ana",
                                  source="test"))  # fmt: skip
        room.bp(60.0, 195, 118)
        room.oximetry(61, 100, 97)
        room.oximetry(100, 105, 84)
        room.oximetry(105, 150, 97)  # latched at 110
        room.emit(m.pause_audio(120.0, user="ana", source="test"))
        room.emit(m.add_note(130.0, text="anxious", user="ana", source="test"))
        assert m.alarms.showing("dose_gate") == (Priority.HIGH, AlarmState.ACTIVE)
        assert m.alarms.showing("spo2_low") == (Priority.HIGH, AlarmState.LATCHED)
        session = await room.reopen(now=400.0)

    assert (session.started_t, session.resume_t, session.dose_t) == (0.0, 400.0, None)
    assert session.bp_readings == ((60.0, 195.0, 118.0),)
    assert session.notes == 1
    assert session.last_t == pytest.approx(149.0)
    assert session.paused_until == pytest.approx(240.0)
    shown = {a.alarm_id: (a.priority, a.state, a.acknowledged) for a in session.alarms}
    assert shown == {
        "bp_high": (Priority.MEDIUM, AlarmState.ACTIVE, False),
        "dose_gate": (Priority.HIGH, AlarmState.ACTIVE, False),
        "spo2_low": (Priority.HIGH, AlarmState.LATCHED, False),
    }

    m = new_monitor()
    out = m.resume(400.0, session=session)
    restored = alarms(out)
    assert {k: (v.priority, v.state, v.restored) for k, v in restored.items()} == {
        "bp_high": (Priority.MEDIUM, AlarmState.ACTIVE, True),
        "dose_gate": (Priority.HIGH, AlarmState.ACTIVE, True),
        "spo2_low": (Priority.HIGH, AlarmState.LATCHED, True),
    }
    (gap,) = [e for e in out if isinstance(e, RecordGap)]
    assert (gap.t, gap.reason) == (400.0, "daemon restarted")
    assert gap.since_t == pytest.approx(149.0)
    assert not [e for e in out if isinstance(e, AudioPause)]  # the pause ended at 240
    # The last BP is 340 s old: past the baseline interval (5 min), so the monitor asks at
    # once, at the resume time, never backdated.
    assert [(e.t, e.reason) for e in out if isinstance(e, NibpRequest)] == [(400.0, "resumed")]
    # The gate is closed again: no dose without the override reason, and the baseline so far
    # is the recorded reading, so bp_rise has a baseline after the dose.
    with pytest.raises(CommandRejected, match="dose_gate is high"):
        m.mark_dose(401.0, user="ana", source="test")
    m.mark_dose(402.0, user="ana", source="test", reason="prescriber agreed")
    assert m.alarms.baseline.bp() == (195.0, 118.0)
    assert m.phase is Phase.ONSET


async def test_an_acknowledged_alarm_stays_acknowledged_and_clears_when_it_ends(tmp_path):
    async with Room(tmp_path / "r.sqlite") as room:
        m = room.monitor
        room.emit(m.start_session(0.0, session_id="s2", route=Route.IV, user="ana",
                                  source="test"))  # fmt: skip
        room.bp(10.0, 120, 80)
        room.at(20.0)
        room.emit(m.mark_dose(20.0, user="ana", source="test"))
        room.oximetry(21, 60, 80)
        room.emit(m.acknowledge(59.5, alarm_id="spo2_low", user="ana", source="test"))
        session = await room.reopen(now=90.0)
    (alarm,) = session.alarms
    assert (alarm.alarm_id, alarm.priority, alarm.state, alarm.acknowledged) == (
        "spo2_low", Priority.HIGH, AlarmState.ACTIVE, True)  # fmt: skip
    assert session.dose_t == 20.0
    assert session.baseline is not None
    assert session.baseline.sys == 120.0

    m = new_monitor()
    out = m.resume(90.0, session=session)
    (restored,) = alarms(out).values()
    assert restored.acknowledged
    assert "spo2_low" in m.alarms.acknowledged
    out = []
    for k in range(90, 100):
        out += m.advance(float(k))
        out += m.on_reading(Reading(t=float(k), device="spo2", spo2=98, pr=72))
    # Acknowledged while active: it clears when SpO2 recovers, it does not latch.
    assert [(e.alarm_id, e.state) for e in out if isinstance(e, AlarmTransition)] == [
        ("spo2_low", AlarmState.CLEARED)
    ]


async def test_a_latched_device_loss_is_shown_again_with_its_device(tmp_path):
    async with Room(tmp_path / "r.sqlite") as room:
        m = room.monitor
        room.emit(m.start_session(0.0, session_id="s3", route=Route.IV, user="ana",
                                  source="test"))  # fmt: skip
        room.bp(10.0, 120, 80)
        room.at(20.0)
        room.emit(m.mark_dose(20.0, user="ana", source="test"))
        room.oximetry(21, 22, 97)
        room.at(60.0)  # lost: medium at 26, high at 51
        room.oximetry(60, 70, 97)  # back: the high latches
        assert m.alarms.showing("device_lost") == (Priority.HIGH, AlarmState.LATCHED)
        session = await room.reopen(now=100.0)
    m = new_monitor()
    out = m.resume(100.0, session=session)
    lost = alarms(out)["device_lost"]
    assert (lost.priority, lost.state, lost.device) == (Priority.HIGH, AlarmState.LATCHED, "spo2")
    # Silence counts from the restart, not from the first run's last frame.
    assert m.alarms.silence["spo2"].medium.due == pytest.approx(105.0)


async def test_the_bp_schedule_and_overdue_follow_the_last_reading(tmp_path):
    """A recent BP reading: no measurement at once; overdue counts from it, never backdated."""
    async with Room(tmp_path / "r.sqlite") as room:
        m = room.monitor
        room.emit(m.start_session(0.0, session_id="s4", route=Route.IV, user="ana",
                                  source="test"))  # fmt: skip
        room.bp(10.0, 120, 80)
        room.at(20.0)
        room.emit(m.mark_dose(20.0, user="ana", source="test"))
        room.bp(200.0, 122, 80)
        session = await room.reopen(now=416.0)  # 3.6 min after the last reading
    m = new_monitor()
    out = m.resume(416.0, session=session)
    assert [e for e in out if isinstance(e, NibpRequest)] == []
    assert m.next_due() <= 200.0 + 600.0  # the onset interval counts from the reading
    out = m.advance(200.0 + 600.0)
    assert [(e.t, e.reason) for e in out if isinstance(e, NibpRequest)] == [(800.0, "schedule")]
    # A record whose last BP is old: asked at the resume, and overdue is not backdated.
    m = new_monitor()
    out = m.resume(5000.0, session=session)
    assert [(e.t, e.reason) for e in out if isinstance(e, NibpRequest)] == [(5000.0, "resumed")]
    out = m.advance(5000.0)
    assert [e.t for e in out if isinstance(e, AlarmTransition)] == [5000.0]


async def test_a_session_too_old_to_resume_is_closed_with_its_reason(tmp_path):
    path = tmp_path / "r.sqlite"
    async with Room(path) as room:
        room.emit(room.monitor.start_session(0.0, session_id="s5", route=Route.IV, user="ana",
                                             source="test"))  # fmt: skip
        await room.recorder.sync()
        room.clock.t = 25 * 3600.0
        assert (
            await room.recorder.open_session(
                max_age_s=24 * 3600.0, baseline_window_s=300.0, nibp_devices=frozenset()
            )
            is None
        )
    db = sqlite3.connect(path)
    assert db.execute("SELECT ended_t FROM sessions").fetchone() == (0.0,)
    (detail,) = db.execute(
        "SELECT detail FROM actions WHERE action = 'session_end' AND source = 'not resumed'"
    ).fetchone()
    assert "more than 86400 s" in detail


async def test_the_predose_checklist_survives_a_restart(tmp_path):
    """Confirmed but for one item before the crash: after it, the dose still needs a reason
    for that item, and only for it (the nurse does not tick the list again)."""
    items = [item.id for item in Config().checklists.predose]
    async with Room(tmp_path / "r.sqlite") as room:
        room.monitor = Monitor(config=Config(), streaming=["spo2"], nibp=["nibp"],
                               predose_gate=True)  # fmt: skip
        m = room.monitor
        room.emit(m.start_session(0.0, session_id="s6", route=Route.IV, user="ana",
                                  source="test"))  # fmt: skip
        room.bp(10.0, 120, 80)
        room.at(20.0)
        room.emit(m.checklist(20.0, kind="predose", checked=items[:-1], reason=None,
                              user="ana", source="test"))  # fmt: skip
        session = await room.reopen(now=60.0)
    assert session.predose_missing == (items[-1],)
    m = Monitor(config=Config(), streaming=["spo2"], nibp=["nibp"], predose_gate=True)
    m.resume(60.0, session=session)
    with pytest.raises(CommandRejected, match=items[-1]):
        m.mark_dose(61.0, user="ana", source="test")
    out = m.mark_dose(62.0, user="ana", source="test", reason="baseline taken on paper")
    (dose,) = [e for e in out if isinstance(e, NurseAction) and e.action == "dose"]
    assert dose.detail["checklist_missing"] == [items[-1]]
