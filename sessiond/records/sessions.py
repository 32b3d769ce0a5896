"""Reading the record back: the sessions it holds, and everything one session recorded.

The record is opened read-only, so listing, exporting and reporting never create, migrate or
lock a database the daemon is writing. A file that is missing, not a database, not a sessiond
record or written by a newer sessiond raises `RecordError` with one line that names the file
and says what to do.

A session's record is every row with its id up to its end: the devices keep sending after a
session ends, and what they send then is not part of it.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sessiond.model import AlarmState, Priority
from sessiond.records.store import SCHEMA_VERSION, RecordError

if TYPE_CHECKING:
    from pathlib import Path

#: The tables that hold a session's rows (`session_id`, `t`, `wall`), in the order exports
#: list them.
TABLES = ("readings", "phases", "alarms", "actions", "device_events", "events")
#: Columns of the record's own bookkeeping, left out of exports.
_INTERNAL = frozenset({"id", "session_id"})
#: A session id given on the command line may be shortened to a unique prefix this long.
MIN_PREFIX = 4


class SessionNotFound(RecordError):
    """No session, or more than one, matches what was asked for."""


def open_record(path: Path) -> sqlite3.Connection:
    """The record at `path`, read-only; `RecordError` (one line) when it cannot be read."""
    if not path.exists():
        msg = f"{path}: no record here; set [records] path and pass the file with --config FILE"
        raise RecordError(msg)
    if not path.is_file():
        msg = f"{path}: not a file; [records] path must name the record's SQLite file"
        raise RecordError(msg)
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        db.execute("PRAGMA busy_timeout=5000")
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        msg = f"{path}: not a readable SQLite database ({exc}); check [records] path, or restore the file from a backup"  # noqa: E501
        raise RecordError(msg) from None
    if "sessions" not in tables or "meta" not in tables:
        db.close()
        msg = f"{path}: not a sessiond record (it has no sessions table); check [records] path"
        raise RecordError(msg)
    version = schema_version(db)
    if version > SCHEMA_VERSION:
        db.close()
        msg = (
            f"{path}: written by a newer sessiond (schema {version}, this one reads up to"
            f" {SCHEMA_VERSION}); read it with that version, or upgrade sessiond"
        )
        raise RecordError(msg)
    return db


def schema_version(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row is not None else 1


def columns(db: sqlite3.Connection, table: str) -> list[str]:
    """The columns `table` has in this record (older schemas have fewer); [] when absent."""
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionInfo:
    """One row of `sessions`, with its stamps parsed; `row` is the row as recorded."""

    id: str
    room: str
    route: str
    started_by: str
    started_t: float
    started_wall: datetime
    dose_t: float | None
    dose_wall: datetime | None
    ended_t: float | None
    ended_wall: datetime | None
    #: The demo's time scale (1: real time); 1 for records without the `speed` column.
    speed: float
    row: dict[str, Any] = field(repr=False)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SessionInfo:
        return cls(
            id=row["id"],
            room=row["room"],
            route=row["route"],
            started_by=row["started_by"],
            started_t=row["started_t"],
            started_wall=datetime.fromisoformat(row["started_wall"]),
            dose_t=row["dose_t"],
            dose_wall=_stamp(row["dose_wall"]),
            ended_t=row["ended_t"],
            ended_wall=_stamp(row["ended_wall"]),
            speed=float(row.get("speed") or 1.0),
            row=row,
        )

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_t is None else self.ended_t - self.started_t


def _stamp(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@dataclass(frozen=True, slots=True, kw_only=True)
class Occurrence:
    """One alarm occurrence: raised, perhaps escalated or latched, until it cleared."""

    alarm_id: str
    start_t: float
    #: None: still shown when the session ended.
    end_t: float | None
    #: The highest priority it reached.
    priority: Priority
    #: The value furthest past its limit that a transition reported, and that limit.
    value: float | None
    limit: float | None
    device: str | None


def occurrences(alarm_rows: list[dict[str, Any]]) -> list[Occurrence]:
    """The occurrences in a session's alarm transitions (in record order)."""
    done: list[Occurrence] = []
    shown: dict[str, dict[str, Any]] = {}
    for row in alarm_rows:
        alarm_id, state = row["alarm_id"], row["state"]
        priority = Priority.from_label(row["priority"])
        now = shown.get(alarm_id)
        if state == AlarmState.CLEARED.value:
            if now is not None:
                done.append(_occurrence(alarm_id, now, end_t=row["t"]))
                del shown[alarm_id]
            continue
        if now is None:
            now = shown[alarm_id] = {
                "start_t": row["t"],
                "priority": priority,
                "value": None,
                "limit": None,
                "device": row.get("device"),
            }
        if priority >= now["priority"]:
            now["priority"] = priority
            if row["value"] is not None:
                now["value"], now["limit"] = row["value"], row.get("limit_value")
    done += [_occurrence(alarm_id, now, end_t=None) for alarm_id, now in shown.items()]
    return sorted(done, key=lambda o: o.start_t)


def _occurrence(alarm_id: str, now: dict[str, Any], *, end_t: float | None) -> Occurrence:
    return Occurrence(
        alarm_id=alarm_id,
        start_t=now["start_t"],
        end_t=end_t,
        priority=now["priority"],
        value=now["value"],
        limit=now["limit"],
        device=now["device"],
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSummary:
    """A session as `sessiond sessions` lists it."""

    session: SessionInfo
    #: Alarm occurrences by the highest priority each reached.
    alarms: dict[Priority, int]
    #: Discharge readiness when the session ended (or now, while open); None before a dose.
    ready: bool | None
    #: Monitoring gaps (from, to) on the session's time axis.
    gaps: tuple[tuple[float, float], ...]
    #: Why sessiond closed the session itself (left open, not resumed); None if a user did.
    closed_by_sessiond: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecord:
    """Everything one session recorded: rows as stored, without `id` and `session_id`."""

    session: SessionInfo
    schema_version: int
    tables: dict[str, list[dict[str, Any]]]
    #: Each table's columns in this record (empty for a table an older schema lacks).
    columns: dict[str, list[str]]

    def events(self, kind: str) -> list[tuple[float, dict[str, Any]]]:
        """The `events` rows of one type as (t, data)."""
        return [
            (row["t"], json.loads(row["data"]))
            for row in self.tables["events"]
            if row["type"] == kind
        ]

    def actions(self) -> list[dict[str, Any]]:
        """Nurse actions with their detail parsed."""
        return [{**row, "detail": json.loads(row["detail"])} for row in self.tables["actions"]]

    def summary(self) -> SessionSummary:
        counts = dict.fromkeys(Priority, 0)
        for occurrence in occurrences(self.tables["alarms"]):
            counts[occurrence.priority] += 1
        readiness = self.events("discharge_ready")
        ready: bool | None = None
        if self.session.dose_t is not None:
            ready = bool(readiness[-1][1]["ready"]) if readiness else False
        gaps = tuple((float(data["since_t"]), t) for t, data in self.events("gap"))
        closed = None
        for action in self.actions():
            if action["action"] == "session_end" and action["user"] == "sessiond":
                closed = str(action["detail"].get("reason", action["source"]))
        return SessionSummary(
            session=self.session, alarms=counts, ready=ready, gaps=gaps, closed_by_sessiond=closed
        )


def list_sessions(
    db: sqlite3.Connection, *, since: datetime | None = None, room: str | None = None
) -> list[SessionInfo]:
    """The sessions started at or after `since` (aware), of `room`, oldest first."""
    out = [SessionInfo.from_row(row) for row in _rows(db, "SELECT * FROM sessions", ())]
    out = [
        s
        for s in out
        if (since is None or s.started_wall >= since) and (room is None or s.room == room)
    ]
    return sorted(out, key=lambda s: s.started_wall)


def listing(
    db: sqlite3.Connection, *, since: datetime | None = None, room: str | None = None
) -> list[tuple[str, ...]]:
    """`sessiond sessions`: a header and one row of cells per session, times local."""
    rows: list[tuple[str, ...]] = [("session", "room", "start", "route", "dose", "end",
                                    "duration", "alarms h/m/l", "ready", "gaps", "")]  # fmt: skip
    for session in list_sessions(db, since=since, room=room):
        summary = load_session(db, session, only=SUMMARY_TABLES).summary()
        day = clock_text(session.started_wall)[:10]

        def at(stamp: datetime | None, day: str = day) -> str:
            """Clock time, with the date only when it is not the start's."""
            if stamp is None:
                return "—"
            text = clock_text(stamp)
            return text[11:] if text.startswith(day) else text

        gap_s = sum(b - a for a, b in summary.gaps)
        notes = []
        if session.speed != 1:
            notes.append(speed_text(session.speed))
        if summary.closed_by_sessiond:
            notes.append("left open, closed by sessiond")
        rows.append((
            session.id,
            session.room,
            clock_text(session.started_wall),
            session.route,
            at(session.dose_wall),
            "open" if session.ended_wall is None else at(session.ended_wall),
            "—" if session.duration_s is None else duration_text(session.duration_s),
            "/".join(str(summary.alarms[p]) for p in sorted(summary.alarms, reverse=True)),
            {True: "yes", False: "no", None: "—"}[summary.ready],
            f"{len(summary.gaps)} ({duration_text(gap_s, with_seconds=True)})"
            if summary.gaps else "—",
            "; ".join(notes),
        ))  # fmt: skip
    return rows


def find_session(db: sqlite3.Connection, ref: str) -> SessionInfo:
    """The session whose id is `ref`, or starts with it (at least `MIN_PREFIX` characters)."""
    exact = _rows(db, "SELECT * FROM sessions WHERE id = ?", (ref,))
    if exact:
        return SessionInfo.from_row(exact[0])
    if len(ref) >= MIN_PREFIX:
        pattern = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        found = _rows(db, "SELECT * FROM sessions WHERE id LIKE ? ESCAPE '\\'", (pattern,))
        if len(found) == 1:
            return SessionInfo.from_row(found[0])
        if found:
            ids = ", ".join(sorted(row["id"] for row in found))
            msg = f"session {ref!r} is ambiguous: {ids}"
            raise SessionNotFound(msg)
    msg = f"no session {ref!r}; `sessiond sessions` lists them"
    raise SessionNotFound(msg)


#: What a summary needs (a listing reads no readings).
SUMMARY_TABLES = ("alarms", "actions", "events")


def load_session(
    db: sqlite3.Connection, session: SessionInfo, *, only: tuple[str, ...] = TABLES
) -> SessionRecord:
    """Every row of `session` up to its end, in record order (tables not in `only` empty)."""
    tables: dict[str, list[dict[str, Any]]] = {}
    names: dict[str, list[str]] = {}
    for table in TABLES:
        names[table] = [name for name in columns(db, table) if name not in _INTERNAL]
        if not names[table] or table not in only:
            tables[table] = []  # an older schema without it, or not asked for
            continue
        rows = _rows(
            db,
            f"SELECT * FROM {table} WHERE session_id = ? AND (? IS NULL OR t <= ?) ORDER BY id",  # noqa: S608
            (session.id, session.ended_t, session.ended_t),
        )
        tables[table] = [{k: v for k, v in row.items() if k not in _INTERNAL} for row in rows]
    return SessionRecord(
        session=session, schema_version=schema_version(db), tables=tables, columns=names
    )


def _rows(db: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    cursor = db.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


# Formatting shared by the listing and the report --------------------------------------------


def local(stamp: datetime) -> datetime:
    """A recorded (UTC) stamp in the machine's local time zone, for people to read."""
    return stamp.astimezone()


def clock_text(stamp: datetime, *, date: bool = True) -> str:
    return local(stamp).strftime("%Y-%m-%d %H:%M" if date else "%H:%M")


def duration_text(seconds: float, *, with_seconds: bool = False) -> str:
    """`2:45` (h:mm) or `2:45:07`."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if with_seconds else f"{hours}:{minutes:02d}"


def offset_text(seconds: float) -> str:
    """Minutes and seconds from an anchor, signed: `+40:35`, `-10:00`."""
    sign = "-" if seconds < 0 else "+"
    minutes, secs = divmod(round(abs(seconds)), 60)
    return f"{sign}{minutes}:{secs:02d}"


def speed_text(speed: float) -> str:
    return f"demo at {speed:g}×"  # noqa: RUF001  (the multiplication sign is meant)
