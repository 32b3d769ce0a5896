"""The recorder: faults said and retried, the buffer's bound, batching in session time, schema."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from sessiond.bus import Bus
from sessiond.clock import VirtualClock
from sessiond.model import (
    AlarmState,
    AlarmTransition,
    NurseAction,
    Priority,
    Reading,
    Route,
    SessionStarted,
)
from sessiond.records import store
from sessiond.records.store import SCHEMA_VERSION, Recorder, RecordError, open_database

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


class Faults:
    """What the recorder tells its owner, as a queue to wait on."""

    def __init__(self) -> None:
        self.said: asyncio.Queue[str | None] = asyncio.Queue()

    def __call__(self, reason: str | None) -> None:
        self.said.put_nowait(reason)

    async def next(self) -> str | None:
        async with asyncio.timeout(5):
            return await self.said.get()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Recorder, Bus, Faults]]:
    faults = Faults()
    recorder = Recorder(
        path=tmp_path / "r.sqlite", clock=VirtualClock(), room_id="room-1", on_fault=faults
    )
    await recorder.open()
    bus = Bus()
    task = asyncio.create_task(recorder.run(bus.subscribe("recorder", maxsize=100)))
    try:
        yield recorder, bus, faults
    finally:
        bus.close()
        await task
        await recorder.close()


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "BUSY_TIMEOUT_MS", 100)
    monkeypatch.setattr(store, "RETRY_FIRST_S", 0.05)
    monkeypatch.setattr(store, "RETRY_MAX_S", 0.1)


def locked(path: Path) -> sqlite3.Connection:
    """Another process's writer holding the lock (a connection of this one will do)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    return db


def alarm_at(t: float) -> AlarmTransition:
    return AlarmTransition(t=t, alarm_id="spo2_low", priority=Priority.MEDIUM,
                           state=AlarmState.ACTIVE)  # fmt: skip


async def test_a_locked_database_is_said_retried_and_nothing_is_lost(running, tmp_path):
    recorder, bus, faults = running
    holder = locked(tmp_path / "r.sqlite")
    bus.publish(alarm_at(1.0))
    assert await faults.next() == "database is locked"
    assert recorder.failing == "database is locked"
    bus.publish(NurseAction(t=2.0, action="note", user="ana", source="test"))
    assert await recorder.sync(timeout_s=5) is False  # at once: the record is failing
    for i in range(20):
        bus.publish(Reading(t=3.0 + i, device="spo2", spo2=97))
    holder.execute("ROLLBACK")
    assert await faults.next() is None
    assert await recorder.sync() is True
    db = sqlite3.connect(tmp_path / "r.sqlite")
    assert db.execute("SELECT count(*) FROM alarms").fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM actions").fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM readings").fetchone() == (20,)
    assert db.execute("SELECT count(*) FROM events").fetchone() == (0,)


async def test_past_the_bound_readings_are_dropped_counted_and_recorded(running, tmp_path):
    """100 readings wait; the oldest beyond are dropped, never an alarm transition."""
    recorder, bus, faults = running
    holder = locked(tmp_path / "r.sqlite")
    bus.publish(alarm_at(0.5))
    assert await faults.next() is not None
    for i in range(250):
        bus.publish(Reading(t=1.0 + i, device="spo2", spo2=97))
        if i % 50 == 0:
            bus.publish(alarm_at(1.0 + i))
    holder.execute("ROLLBACK")
    assert await faults.next() is None
    assert await recorder.sync() is True
    db = sqlite3.connect(tmp_path / "r.sqlite")
    times = [t for (t,) in db.execute("SELECT t FROM readings ORDER BY t")]
    assert times == [1.0 + i for i in range(150, 250)]  # the newest 100
    assert db.execute("SELECT count(*) FROM alarms").fetchone() == (6,)
    (data,) = db.execute("SELECT data FROM events WHERE type = 'record_dropped'").fetchone()
    assert json.loads(data) == {"readings": 150, "since_t": 1.0, "until_t": 150.0}
    assert recorder.dropped_recorded == 150


@pytest.mark.parametrize(("speed", "lo", "hi"), [(1.0, 0.4, 1.0), (60.0, 0.0, 0.2)])
async def test_readings_wait_at_most_half_a_second_of_session_time(tmp_path, speed, lo, hi):
    """At 60x a reading is committed within 1/120 s (plus the commit), not 0.5 s later."""
    recorder = Recorder(path=tmp_path / "r.sqlite", clock=VirtualClock(), room_id="r",
                        speed=speed)  # fmt: skip
    await recorder.open()
    bus = Bus()
    task = asyncio.create_task(recorder.run(bus.subscribe("recorder")))
    await asyncio.sleep(0)  # the recorder takes its subscription
    loop = asyncio.get_running_loop()
    start = loop.time()
    bus.publish(Reading(t=1.0, device="spo2", spo2=97))
    assert await recorder.sync() is True
    elapsed = loop.time() - start
    bus.close()
    await task
    await recorder.close()
    assert lo <= elapsed <= hi, elapsed


async def test_the_speed_is_recorded_and_a_version_3_record_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    db = open_database(path)
    # A record written before `sessions.speed` (schema 3).
    db.execute("DROP TABLE sessions")
    db.execute(
        "CREATE TABLE sessions (id TEXT PRIMARY KEY, room TEXT NOT NULL, route TEXT NOT NULL,"
        " started_t REAL NOT NULL, started_wall TEXT NOT NULL, started_by TEXT NOT NULL,"
        " dose_t REAL, dose_wall TEXT, ended_t REAL, ended_wall TEXT)"
    )
    db.execute("INSERT INTO sessions VALUES ('s', 'r', 'iv', 0, '2026-01-01T00:00:00+00:00',"
               " 'ana', NULL, NULL, NULL, NULL)")  # fmt: skip
    db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    db.close()
    db = open_database(path)
    assert db.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)
    assert db.execute("SELECT speed FROM sessions").fetchall() == [(1.0,)]


def test_an_unusable_record_is_one_message_naming_the_setting(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(RecordError, match=r"cannot create the record .*\[records\] path"):
        open_database(tmp_path / "a-file" / "r.sqlite")
    (tmp_path / "junk.sqlite").write_bytes(b"not a database " * 100)
    with pytest.raises(RecordError, match=r"not a usable sessiond record.*\[records\] path"):
        open_database(tmp_path / "junk.sqlite")


class JitteryClock(VirtualClock):
    """A real-time clock's stamps: each read of the system time is a little later."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def wall(self, t: float) -> datetime:
        self.reads += 1
        return super().wall(t) + timedelta(microseconds=self.reads)


async def test_events_of_one_instant_have_one_wall_stamp(tmp_path):
    """A dose and the start of its infusion: one stamp, so that a resume, which reads times
    back from the stamps, finds them at the same time."""
    recorder = Recorder(path=tmp_path / "r.sqlite", clock=JitteryClock(), room_id="r")
    await recorder.open()
    bus = Bus()
    task = asyncio.create_task(recorder.run(bus.subscribe("recorder")))
    await asyncio.sleep(0)  # the recorder takes its subscription
    bus.publish(SessionStarted(t=1.0, session_id="s", route=Route.IV, user="ana"))
    for action in ("dose", "infusion_start"):
        bus.publish(NurseAction(t=5.0, action=action, user="ana", source="test"))
    bus.publish(NurseAction(t=6.0, action="note", user="ana", source="test"))
    assert await recorder.sync() is True
    bus.close()
    await task
    await recorder.close()
    db = sqlite3.connect(tmp_path / "r.sqlite")
    walls = dict(db.execute("SELECT action, wall FROM actions"))
    (dose_wall,) = db.execute("SELECT dose_wall FROM sessions").fetchone()
    assert walls["dose"] == walls["infusion_start"] == dose_wall
    assert walls["note"] != dose_wall
