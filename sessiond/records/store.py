"""The session record: readings, phases, alarm transitions and nurse actions in SQLite (WAL).

The recorder is a bus subscriber; its writes run on one dedicated thread, so a slow disk
never holds up the monitor. Alarm transitions and nurse actions are committed at once with
`synchronous=FULL` (durable across power loss); readings are batched for at most
`READING_BATCH_S` of real time and `READING_BATCH_SESSION_S` of session time, and committed
with `synchronous=NORMAL`, so a crash loses at most that much of them (at any speed) and
nothing else.

A write that fails (the database locked by another process past `BUSY_TIMEOUT_MS`, a full
disk, an I/O error) is a fault, never a silent stop: `on_fault` is told (the daemon raises
`record_fault` and refuses commands it could not record), the same transaction is retried
with backoff (`RETRY_FIRST_S` doubling to `RETRY_MAX_S`), and meanwhile events wait in the
recorder's bus subscription. That queue never drops an alarm transition, a nurse action or
any other event but a reading; readings past its bound (`[records] buffer_readings`) are
dropped oldest first, counted, and written as a `record_dropped` event once writes resume.
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
    Waveform,
)
from sessiond.records.history import load_open_session
from sessiond.wire import event_json

if TYPE_CHECKING:
    from collections.abc import Callable

    from sessiond.bus import Subscription
    from sessiond.clock import Clock
    from sessiond.model import Event
    from sessiond.session.state import OpenSession

logger = logging.getLogger(__name__)

Statement = tuple[str, tuple[Any, ...]]

#: How long a nurse's command waits for its record before it is answered as not recorded.
SYNC_TIMEOUT_S = 5.0
#: How long a write waits for another process's lock before it counts as failed (ms): short,
#: so that a locked database is a fault the nurse hears of within about a second.
BUSY_TIMEOUT_MS = 1000
#: SQLite's page cache per connection of the daemon (KiB; SQLite's default is 2000). The
#: recorder appends and the console reads a session back in one pass: the operating system's
#: file cache serves re-reads, and a small cache keeps the daemon's memory flat over a session.
CACHE_KIB = 256

#: Readings wait at most this long (real seconds) before they are committed ...
READING_BATCH_S = 0.5
#: ... and at most this long in session time, so a sped-up demo loses no more to a crash.
READING_BATCH_SESSION_S = 0.5
#: Events in one transaction at most: a backlog after a fault is written in steps.
MAX_BATCH_EVENTS = 2000

#: A failed write is retried after this long (real seconds: a disk recovers in real time),
#: doubling up to `RETRY_MAX_S`.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 2.0
#: At shutdown, a failing record is retried this long before what waits is given up (logged).
SHUTDOWN_RETRY_S = 5.0

#: 2: `events` (BP requests and failures, audio pauses, baseline, readiness, room changes).
#: 3: `alarms.device` (the device a technical alarm is about).
#: 4: `sessions.speed` (the clock's speed factor: above 1 the stamps are a demo's virtual time).
SCHEMA_VERSION = 4
#: Each step brings a database from the version before it to its own.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    3: ("ALTER TABLE alarms ADD COLUMN device TEXT",),
    4: ("ALTER TABLE sessions ADD COLUMN speed REAL NOT NULL DEFAULT 1.0",),
}
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, room TEXT NOT NULL, route TEXT NOT NULL,
    started_t REAL NOT NULL, started_wall TEXT NOT NULL, started_by TEXT NOT NULL,
    dose_t REAL, dose_wall TEXT, ended_t REAL, ended_wall TEXT,
    speed REAL NOT NULL DEFAULT 1.0
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
    "INSERT INTO sessions (id, room, route, started_t, started_wall, started_by, speed)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
#: A session resumed by a faster clock: the record says some of its stamps are virtual.
_SPEED = "UPDATE sessions SET speed = ? WHERE id = ? AND speed < ?"
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
    """The record database cannot be used (cannot be created, not a database, newer schema)."""


def open_database(path: str | Path) -> sqlite3.Connection:
    """Open (and create, or bring up to date) the record database in WAL mode.

    Raises `RecordError` naming the file, the cause and the setting to change.
    """
    path = Path(path)
    try:
        return _open_database(path)
    except RecordError:
        raise
    except sqlite3.DatabaseError as exc:
        cause = str(exc)
        if "not a database" in cause or "malformed" in cause:
            msg = (
                f"{path}: not a usable sessiond record ({cause}); move the file away or set"
                " [records] path to another file"
            )
        else:
            msg = f"{path}: cannot open the record ({cause}); check [records] path"
        raise RecordError(msg) from exc
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename and str(exc.filename) != str(path) else ""
        msg = (
            f"{path}: cannot create the record ({exc.strerror or exc}{where}); set [records]"
            " path to a file in a writable directory"
        )
        raise RecordError(msg) from exc


def _open_database(path: Path) -> sqlite3.Connection:
    if path.parent != Path():
        path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        return _prepare(db, path)
    except BaseException:
        db.close()
        raise


def _prepare(db: sqlite3.Connection, path: Path) -> sqlite3.Connection:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
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
    return not isinstance(event, Reading | Waveform)


class Recorder:
    """Writes every bus event of one room to SQLite, off the event loop.

    `on_fault(reason)` is called on the loop when writes start failing (with the cause) and
    `on_fault(None)` when they work again; `failing` holds the cause meanwhile.
    """

    def __init__(
        self,
        *,
        path: str | Path,
        clock: Clock,
        room_id: str,
        speed: float = 1.0,
        on_fault: Callable[[str | None], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.room_id = room_id
        self.speed = speed
        self.on_fault = on_fault
        self._clock = clock
        #: The last session time stamped, and its wall stamp (`_wall`).
        self._stamped: tuple[float, str] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recorder")
        self._db: sqlite3.Connection | None = None
        self._session_id: str | None = None
        self._sub: Subscription | None = None
        self._waiters: list[asyncio.Future[None]] = []
        #: Events committed so far.
        self.written = 0
        #: Why the record cannot be written now; None while writes work.
        self.failing: str | None = None
        #: Readings dropped from the full buffer and recorded as `record_dropped` so far.
        self.dropped_recorded = 0
        #: Events given up at shutdown because the record could not be written.
        self.lost = 0
        self._fault_started = (0.0, 0)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._db = await loop.run_in_executor(self._executor, open_database, self.path)

    async def open_session(
        self, *, max_age_s: float, baseline_window_s: float, nibp_devices: frozenset[str]
    ) -> OpenSession | None:
        """The room's last session without an end, with what it showed, on its own time axis.

        A session started more than `max_age_s` ago, or (with a clock set back) in the
        future, is not resumed: it was left open, and is closed in the record with the reason.
        A sped-up clock's stamps are virtual: its session resumes where the record stops.
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
                virtual=self.speed != 1.0,
            ),
        )

    async def sync(self, *, timeout_s: float = SYNC_TIMEOUT_S) -> bool:
        """Wait until every event published so far is committed; False if that took too long
        or the record is failing (what was published stays queued and is written later).

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
                    if self.failing is not None:
                        return False
                    waiter = asyncio.get_running_loop().create_future()
                    self._waiters.append(waiter)
                    await waiter
                return True
        logger.error("recorder: events not on disk after %.0f s (disk slow?)", timeout_s)
        return False

    async def run(self, sub: Subscription) -> None:
        """Record until the subscription closes; then flush what is left."""
        self._sub = sub
        # Readings wait at most half a second, real or session: a crash at 60x loses no more.
        window_s = min(READING_BATCH_S, READING_BATCH_SESSION_S / self.speed)
        loop = asyncio.get_running_loop()
        batch: list[Event] = []
        try:
            while True:
                try:
                    batch.append(await sub.get())
                except EOFError:
                    break
                deadline = loop.time() + window_s
                # Gather readings for a moment; an alarm or an action goes to disk at once.
                while not _critical(batch[-1]) and len(batch) < MAX_BATCH_EVENTS:
                    event = sub.get_nowait()
                    if event is not None:
                        batch.append(event)
                        continue
                    try:
                        async with asyncio.timeout_at(deadline):
                            batch.append(await sub.get())
                    except (TimeoutError, EOFError):
                        break
                while len(batch) < MAX_BATCH_EVENTS and (event := sub.get_nowait()) is not None:
                    batch.append(event)
                await self._write(batch)
                batch = []
        finally:
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[Event]) -> None:
        """Commit `batch` in one transaction, retrying until it is on disk (or given up)."""
        rows = self._dropped_rows() + [row for event in batch for row in self._rows(event)]
        durable = any(_critical(event) for event in batch)
        loop = asyncio.get_running_loop()
        delay = RETRY_FIRST_S
        closing_since: float | None = None
        while True:
            try:
                await loop.run_in_executor(self._executor, self._commit, rows, durable)
            except (sqlite3.Error, OSError) as exc:
                self._fault(exc)
            else:
                break
            sub = self._sub
            if sub is not None and sub.closed:
                # Shutting down: a record that stays unwritable cannot hold the exit forever.
                closing_since = loop.time() if closing_since is None else closing_since
                if loop.time() - closing_since > SHUTDOWN_RETRY_S:
                    self.lost += len(batch) + len(sub)
                    logger.error(
                        "recorder: giving up at shutdown, %d events not recorded (%s)",
                        self.lost,
                        self.failing,
                    )
                    while sub.get_nowait() is not None:
                        pass
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
        self.written += len(batch)
        self._recovered()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _dropped_rows(self) -> list[Statement]:
        """A `record_dropped` event for the readings the full buffer dropped since the last."""
        sub = self._sub
        if sub is None or sub.dropped <= self.dropped_recorded or sub.dropped_span is None:
            return []
        count = sub.dropped - self.dropped_recorded
        since_t, until_t = sub.dropped_span
        self.dropped_recorded, sub.dropped_span = sub.dropped, None
        data = {"readings": count, "since_t": round(since_t, 3), "until_t": round(until_t, 3)}
        wall = self._wall(until_t)
        return [(_EVENT, (self._session_id, until_t, wall, "record_dropped", json.dumps(data)))]

    def _dropped_total(self) -> int:
        return 0 if self._sub is None else self._sub.dropped

    def _fault(self, exc: BaseException) -> None:
        reason = str(exc) or type(exc).__name__
        if self.failing == reason:
            logger.debug("recorder: still failing: %s", reason)
            return
        first = self.failing is None
        self.failing = reason
        if first:
            self._fault_started = (asyncio.get_running_loop().time(), self._dropped_total())
            logger.error(
                "recorder: cannot write the record %s (%s); retrying, alarms and actions are"
                " kept and readings buffered (up to %d)",
                self.path,
                reason,
                self._sub.maxsize if self._sub is not None else 0,
            )
        else:
            logger.warning("recorder: still cannot write the record: %s", reason)
        # A command waiting for its record learns at once that it will not come soon.
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if first and self.on_fault is not None:
            self.on_fault(reason)

    def _recovered(self) -> None:
        if self.failing is None:
            return
        self.failing = None
        started, dropped_before = self._fault_started
        logger.warning(
            "recorder: the record is written again after %.1f s; %d readings dropped meanwhile",
            asyncio.get_running_loop().time() - started,
            self._dropped_total() - dropped_before,
        )
        if self.on_fault is not None:
            self.on_fault(None)

    def _wall(self, t: float) -> str:
        """The wall stamp of session time `t`. Events of one instant (a dose and the start
        of its infusion) get one stamp: at real time the clock reads the system time for
        each, and a resume, which reads times back from stamps, must find them equal."""
        stamped = self._stamped
        if stamped is None or stamped[0] != t:
            stamped = self._stamped = (t, self._clock.wall(t).isoformat())
        return stamped[1]

    def _rows(self, event: Event) -> list[Statement]:  # noqa: PLR0911  (one return per type)
        """The SQL for one event; runs on the loop so the session id follows event order."""
        wall = self._wall(event.t)
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
                if event.resumed:  # its row is there already
                    return [(_SPEED, (self.speed, event.session_id, self.speed))]
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
                            self.speed,
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
            case Waveform():
                return []  # the console's pleth: the record keeps values, not waveforms
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
        # IMMEDIATE: the write lock (or the busy timeout) comes first, not halfway through.
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in rows:
                db.execute(sql, params)
            db.execute("COMMIT")
        except BaseException:
            # A full disk may have rolled the transaction back already.
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        db = self._db
        self._db = None
        if db is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, db.close)
        self._executor.shutdown(wait=True)
