"""Retention: deleting sessions that ended before a date (`sessiond purge`, `[records] keep_days`).

What goes: each session that ended before the cutoff, with every row it recorded, and rows
that belong to no session (readings while no session ran) from before the cutoff. What stays:
every session still open, whenever it started, and every session that ended on or after the
cutoff, whole. Deleted content is overwritten (`secure_delete`), not left in free pages. The
daemon may keep running: the purge is one short transaction.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sessiond.records.sessions import TABLES, columns, open_record
from sessiond.records.store import RecordError

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgePlan:
    """What a purge deletes (or, on a dry run, would delete)."""

    before: datetime
    #: (id, room, started wall, ended wall) of each session that goes.
    sessions: tuple[tuple[str, str, str, str], ...]
    #: Rows per table that go, the sessions' and those of no session (`sessions` aside).
    rows: dict[str, int]
    #: Sessions started before the cutoff that stay because they are still open.
    kept_open: tuple[str, ...]


def purge(path: Path, *, before: datetime, dry_run: bool) -> PurgePlan:
    """Delete what ended before `before` (aware); with `dry_run`, only say what would go."""
    if dry_run:
        db = open_record(path)
    else:
        open_record(path).close()  # the same checks, read-only, before writing anything
        uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=rw"
        db = sqlite3.connect(uri, uri=True, isolation_level=None)
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA secure_delete=ON")
    try:
        if not dry_run:
            db.execute("BEGIN IMMEDIATE")
        try:
            plan = _plan(db, before)
            if not dry_run:
                _delete(db, plan)
        except BaseException:
            if not dry_run:
                db.execute("ROLLBACK")
            raise
        if not dry_run:
            db.execute("COMMIT")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.OperationalError as exc:
        msg = f"{path}: cannot purge ({exc}); try again, or stop the daemon first"
        raise RecordError(msg) from None
    finally:
        db.close()
    return plan


def _plan(db: sqlite3.Connection, before: datetime) -> PurgePlan:
    going, kept_open = [], []
    for sid, room, started, ended in db.execute(
        "SELECT id, room, started_wall, ended_wall FROM sessions ORDER BY started_wall"
    ):
        if ended is None:
            if datetime.fromisoformat(started) < before:
                kept_open.append(sid)
        elif datetime.fromisoformat(ended) < before:
            going.append((sid, room, started, ended))
    ids = [sid for sid, *_ in going]
    rows = {}
    for table in _tables(db):
        count = 0
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            count += db.execute(
                f"SELECT count(*) FROM {table} WHERE session_id IN ({marks})",  # noqa: S608
                chunk,
            ).fetchone()[0]
        count += sum(1 for _ in _orphans(db, table, before))
        rows[table] = count
    return PurgePlan(before=before, sessions=tuple(going), rows=rows, kept_open=tuple(kept_open))


def _delete(db: sqlite3.Connection, plan: PurgePlan) -> None:
    ids = [sid for sid, *_ in plan.sessions]
    for table in _tables(db):
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            db.execute(f"DELETE FROM {table} WHERE session_id IN ({marks})", chunk)  # noqa: S608
        orphans = [row_id for (row_id,) in _orphans(db, table, plan.before)]
        for chunk in _chunks(orphans):
            marks = ",".join("?" * len(chunk))
            db.execute(f"DELETE FROM {table} WHERE id IN ({marks})", chunk)  # noqa: S608
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        db.execute(f"DELETE FROM sessions WHERE id IN ({marks})", chunk)  # noqa: S608


def _tables(db: sqlite3.Connection) -> list[str]:
    return [table for table in TABLES if columns(db, table)]


def _orphans(db: sqlite3.Connection, table: str, before: datetime) -> list[tuple[int]]:
    """Rows of no session stamped before the cutoff (stamps compared as instants)."""
    return [
        (row_id,)
        for row_id, wall in db.execute(
            f"SELECT id, wall FROM {table} WHERE session_id IS NULL"  # noqa: S608
        )
        if datetime.fromisoformat(wall) < before
    ]


def _chunks(values: list[str] | list[int], size: int = 500) -> list[list[str] | list[int]]:
    return [values[i : i + size] for i in range(0, len(values), size)]
