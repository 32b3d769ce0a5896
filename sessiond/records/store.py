"""The session record: readings, phases, alarm transitions and nurse actions in SQLite (WAL).

The recorder is a bus subscriber; its writes run on one dedicated thread, so a slow disk
never holds up the monitor. Alarm transitions and nurse actions are committed at once with
`synchronous=FULL` (durable across power loss); readings are batched for at most
`READING_BATCH_S` and committed with `synchronous=NORMAL`, so a crash loses at most that
much of them and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sessiond.model import (
    AlarmTransition,
    DeviceStatus,
    NurseAction,
    PhaseChanged,
    Reading,
    SessionStarted,
)
from sessiond.records.history import load_open_session
from sessiond.wire import event_json

if TYPE_CHECKING:
    from sessiond.bus import Subscription
    from sessiond.clock import Clock
    from sessiond.model import Event
    from sessiond.session.state import OpenSession

logger = logging.getLogger(__name__)

Statement = tuple[str, tuple[Any, ...]]

#: How long a nurse's command waits for its record before it answers anyway (and says so).
SYNC_TIMEOUT_S = 5.0

#: Readings wait at most this long (real seconds) before they are committed.
READING_BATCH_S = 0.5

#: 2: `events` (BP requests and failures, audio pauses, baseline, readiness, room changes).
#: 3: `alarms.device` (the device a technical alarm is about).
SCHEMA_VERSION = 3
#: Each step brings a database from the version before it to its own.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    3: ("ALTER TABLE alarms ADD COLUMN device TEXT",),
}
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, room TEXT NOT NULL, route TEXT NOT NULL,
    started_t REAL NOT NULL, started_wall TEXT NOT NULL, started_by TEXT NOT NULL,
    dose_t REAL, dose_wall TEXT, ended_t REAL, ended_wall TEXT
);
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY, session_id TEXT, t REAL NOT NULL, wall TEXT NOT NULL,
    device TEXT NOT NULL, spo2 INTEGER, pr INTEGER, pi REAL,
    sys INTEGER, dia INTEGER, map INTEGER, flags TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS phases (
    id INTEGER PRIMARY KEY, session_id TEXT, t REAL NOT NULL, wall TEXT NOT NULL,
    phase TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alarms (
    id INTEGER PRIMARY KEY, session_id TEXT, t REAL NOT NULL, wall TEXT NOT NULL,
    alarm_id TEXT NOT NULL, priority TEXT NOT NULL, state TEXT NOT NULL, phase TEXT,
    value REAL, limit_value REAL, device TEXT
);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY, session_id TEXT, t REAL NOT NULL, wall TEXT NOT NULL,
    action TEXT NOT NULL, user TEXT NOT NULL, source TEXT NOT NULL, detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS device_events (
    id INTEGER PRIMARY KEY, session_id TEXT, t REAL NOT NULL, wall TEXT NOT NULL,
    device TEXT NOT NULL, connected INTEGER NOT NULL, detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, session_id TEXT, t REAL NOT NULL, wall TEXT NOT NULL,
    type TEXT NOT NULL, data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_by_session ON readings (session_id, t);
CREATE INDEX IF NOT EXISTS alarms_by_session ON alarms (session_id, t);
"""


_READING = (
    "INSERT INTO readings (session_id, t, wall, device, spo2, pr, pi, sys, dia, map, flags)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ALARM = (
    "INSERT INTO alarms (session_id, t, wall, alarm_id, priority, state, phase, value,"
    " limit_value, device) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_PHASE = "INSERT INTO phases (session_id, t, wall, phase) VALUES (?, ?, ?, ?)"
_SESSION = (
    "INSERT INTO sessions (id, room, route, started_t, started_wall, started_by)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_ACTION = (
    "INSERT INTO actions (session_id, t, wall, action, user, source, detail)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_DOSE = "UPDATE sessions SET dose_t = ?, dose_wall = ? WHERE id = ?"
_END = "UPDATE sessions SET ended_t = ?, ended_wall = ? WHERE id = ?"
_DEVICE = (
    "INSERT INTO device_events (session_id, t, wall, device, connected, detail)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


_EVENT = "INSERT INTO events (session_id, t, wall, type, data) VALUES (?, ?, ?, ?, ?)"


class RecordError(Exception):
    """The record database cannot be used (newer schema, not a database)."""


def open_database(path: str | Path) -> sqlite3.Connection:
    """Open (and create, or bring up to date) the record database in WAL mode."""
    path = Path(path)
    if path.parent != Path():
        path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=5000")
    fresh = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'meta'").fetchone()[0] == 0
    db.executescript(SCHEMA)  # an older database keeps its tables; migrations add columns
    if fresh:
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        return db
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = int(row[0]) if row is not None else 1
    if version > SCHEMA_VERSION:
        db.close()
        msg = (
            f"{path}: the record was written by a newer sessiond (schema {version}, this one"
            f" reads up to {SCHEMA_VERSION}); upgrade sessiond or use another [records] path"
        )
        raise RecordError(msg)
    for step in range(version + 1, SCHEMA_VERSION + 1):
        db.execute("BEGIN")
        for sql in MIGRATIONS.get(step, ()):
            with contextlib.suppress(sqlite3.OperationalError):  # a column already there
                db.execute(sql)
        db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(step),)
        )
        db.execute("COMMIT")
    return db


def _critical(event: Event) -> bool:
    return not isinstance(event, Reading)


class Recorder:
    """Writes every bus event of one room to SQLite, off the event loop."""

    def __init__(self, *, path: str | Path, clock: Clock, room_id: str) -> None:
        self.path = Path(path)
        self.room_id = room_id
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recorder")
        self._db: sqlite3.Connection | None = None
        self._session_id: str | None = None
        self._sub: Subscription | None = None
        self._waiters: list[asyncio.Future[None]] = []
        #: Events committed so far.
        self.written = 0

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._db = await loop.run_in_executor(self._executor, open_database, self.path)

    async def open_session(
        self, *, max_age_s: float, baseline_window_s: float, nibp_devices: frozenset[str]
    ) -> OpenSession | None:
        """The room's last session without an end, with what it showed, on its own time axis.

        A session started more than `max_age_s` ago, or (with a clock set back) in the
        future, is not resumed: it was left open, and is closed in the record with the reason.
        """
        db = self._db
        assert db is not None, "Recorder.open() was not awaited"
        now_wall = self._clock.wall(self._clock.now())
        return await asyncio.get_running_loop().run_in_executor(
            self._executor,
            lambda: load_open_session(
                db,
                room_id=self.room_id,
                now_wall=now_wall,
                max_age_s=max_age_s,
                baseline_window_s=baseline_window_s,
                nibp_devices=nibp_devices,
            ),
        )

    async def sync(self, *, timeout_s: float = SYNC_TIMEOUT_S) -> bool:
        """Wait until every event published so far is committed; False if that took too long.

        A command answers its user only after this, so an acknowledged nurse action is
        never lost to a crash a moment later.
        """
        sub = self._sub
        if sub is None:
            return True
        target = sub.received
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self.written + sub.dropped < target:
                    waiter = asyncio.get_running_loop().create_future()
                    self._waiters.append(waiter)
                    await waiter
                return True
        logger.error("recorder: events not on disk after %.0f s (disk slow?)", timeout_s)
        return False

    async def run(self, sub: Subscription) -> None:
        """Record until the subscription closes; then flush what is left."""
        self._sub = sub
        loop = asyncio.get_running_loop()
        batch: list[Event] = []
        try:
            while True:
                try:
                    batch.append(await sub.get())
                except EOFError:
                    break
                deadline = loop.time() + READING_BATCH_S
                # Gather readings for a moment; an alarm or an action goes to disk at once.
                while not _critical(batch[-1]):
                    event = sub.get_nowait()
                    if event is not None:
                        batch.append(event)
                        continue
                    try:
                        async with asyncio.timeout_at(deadline):
                            batch.append(await sub.get())
                    except (TimeoutError, EOFError):
                        break
                while (event := sub.get_nowait()) is not None:
                    batch.append(event)
                await self._write(batch)
                batch = []
        finally:
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[Event]) -> None:
        rows = [row for event in batch for row in self._rows(event)]
        durable = any(_critical(event) for event in batch)
        await asyncio.get_running_loop().run_in_executor(
            self._executor, self._commit, rows, durable
        )
        self.written += len(batch)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _rows(self, event: Event) -> list[Statement]:  # noqa: PLR0911  (one return per type)
        """The SQL for one event; runs on the loop so the session id follows event order."""
        wall = self._clock.wall(event.t).isoformat()
        sid = self._session_id
        match event:
            case Reading():
                flags = ",".join(event.flags.names())
                return [
                    (
                        _READING,
                        (
                            sid,
                            event.t,
                            wall,
                            event.device,
                            event.spo2,
                            event.pr,
                            event.pi,
                            event.sys,
                            event.dia,
                            event.map,
                            flags,
                        ),
                    )
                ]
            case AlarmTransition():
                if event.restored:
                    return []  # shown again after a restart: the record holds it already
                phase = None if event.phase is None else event.phase.value
                return [
                    (
                        _ALARM,
                        (
                            sid,
                            event.t,
                            wall,
                            event.alarm_id,
                            event.priority.label,
                            event.state.value,
                            phase,
                            event.value,
                            event.limit,
                            event.device,
                        ),
                    )
                ]
            case PhaseChanged():
                return [(_PHASE, (sid, event.t, wall, event.phase.value))]
            case SessionStarted():
                self._session_id = event.session_id
                if event.resumed:
                    return []  # its row is there already
                return [
                    (
                        _SESSION,
                        (
                            event.session_id,
                            self.room_id,
                            event.route.value,
                            event.t,
                            wall,
                            event.user,
                        ),
                    )
                ]
            case NurseAction():
                action = (
                    _ACTION,
                    (
                        sid,
                        event.t,
                        wall,
                        event.action,
                        event.user,
                        event.source,
                        json.dumps(event.detail),
                    ),
                )
                # One transaction: the action row and the session's dose or end time.
                if event.action == "dose":
                    return [action, (_DOSE, (event.t, wall, sid))]
                if event.action == "session_end":
                    # What comes after the end (the next patient's readings before a new
                    # start) belongs to no session.
                    self._session_id = None
                    return [action, (_END, (event.t, wall, sid))]
                return [action]
            case DeviceStatus():
                return [
                    (
                        _DEVICE,
                        (sid, event.t, wall, event.device, int(event.connected), event.detail),
                    )
                ]
            case _:
                data = event_json(event)
                kind = data.pop("type")
                del data["t"]
                return [(_EVENT, (sid, event.t, wall, kind, json.dumps(data)))]

    def _commit(self, rows: list[Statement], durable: bool) -> None:
        db = self._db
        assert db is not None, "Recorder.open() was not awaited"
        db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        db.execute("BEGIN")
        try:
            for sql, params in rows:
                db.execute(sql, params)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    async def close(self) -> None:
        db = self._db
        self._db = None
        if db is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, db.close)
        self._executor.shutdown(wait=True)
