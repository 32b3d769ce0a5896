"""Reading a session back from the record for the console: entries and notes, and trends.

The console shows what the record holds, not what a page happened to keep: a reloaded page
gets the whole session again. Reads go through a read-only connection of their own, on a
worker thread, so they never wait behind the recorder's writes nor hold the event loop.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from sessiond.records.store import CACHE_KIB

#: Nurse actions the console reads back as entries (notes, manual entries, checklists, dose).
ENTRY_ACTIONS = ("note", "entry", "checklist", "dose", "session_start", "session_end")
#: Flags under which an oximeter value is not the patient's (as `INVALID_FOR_ALARMS`).
_INVALID_FLAGS = ("sensor_off", "no_sensor", "searching", "artifact")
#: Most points a trend request may ask for per series.
MAX_POINTS = 2000


def session_entries(db: sqlite3.Connection, session_id: str) -> list[dict[str, Any]]:
    """The session's notes, manual entries, checklists and dose, oldest first, with text."""
    marks = ",".join("?" * len(ENTRY_ACTIONS))
    rows = db.execute(
        f"SELECT t, wall, action, user, source, detail FROM actions "  # noqa: S608 - placeholders only
        f"WHERE session_id = ? AND action IN ({marks}) ORDER BY t, id",
        (session_id, *ENTRY_ACTIONS),
    ).fetchall()
    out = []
    for t, wall, action, user, source, detail in rows:
        entry = {"t": round(t, 3), "wall": wall, "action": action, "user": user, "source": source}
        entry.update(json.loads(detail or "{}"))
        out.append(entry)
    return out


def session_trend(
    db: sqlite3.Connection, session_id: str, *, points: int, bp_devices: frozenset[str]
) -> dict[str, Any]:
    """The session's vitals for a trend chart, with its phases, dose, alarms and entries.

    Oximetry is downsampled to at most `points` buckets of equal time: each holds the lowest
    valid SpO2 (a desaturation is never averaged away) and the highest valid pulse rate. BP
    readings (a few an hour, by the module or by hand) are all kept.
    """
    session = db.execute(
        "SELECT route, started_t, dose_t, ended_t FROM sessions WHERE id = ?", (session_id,)
    ).fetchone()
    if session is None:
        return {"session_id": session_id, "found": False}
    route, started_t, dose_t, ended_t = session
    last = db.execute("SELECT max(t) FROM readings WHERE session_id = ?", (session_id,)).fetchone()[
        0
    ]
    end = max(last or started_t, ended_t or started_t, started_t + 1.0)
    bucket = max(1.0, (end - started_t) / max(1, min(points, MAX_POINTS)))
    bp_marks = ",".join("?" * len(bp_devices)) or "''"
    invalid = " AND ".join(f"flags NOT LIKE '%{flag}%'" for flag in _INVALID_FLAGS)
    oximetry = db.execute(
        f"SELECT min(t), min(spo2), max(pr) FROM readings WHERE session_id = ? "  # noqa: S608 - constants and placeholders
        f"AND device NOT IN ({bp_marks}) AND device != 'manual' AND {invalid} "
        f"AND (spo2 IS NOT NULL OR pr IS NOT NULL) "
        f"GROUP BY CAST((t - ?) / ? AS INTEGER) ORDER BY 1",
        (session_id, *bp_devices, started_t, bucket),
    ).fetchall()
    bp = db.execute(
        "SELECT t, device, sys, dia, map, pr FROM readings WHERE session_id = ? "
        "AND sys IS NOT NULL AND dia IS NOT NULL ORDER BY t",
        (session_id,),
    ).fetchall()
    alarms = db.execute(
        "SELECT t, alarm_id, priority, state FROM alarms WHERE session_id = ? ORDER BY t, id",
        (session_id,),
    ).fetchall()
    phases = db.execute(
        "SELECT t, phase FROM phases WHERE session_id = ? ORDER BY t, id", (session_id,)
    ).fetchall()
    return {
        "session_id": session_id,
        "found": True,
        "route": route,
        "started_t": started_t,
        "dose_t": dose_t,
        "ended_t": ended_t,
        "bucket_s": bucket,
        "oximetry": [[round(t, 3), spo2, pr] for t, spo2, pr in oximetry],
        "bp": [
            {"t": round(t, 3), "device": d, "sys": s, "dia": di, "map": m, "pr": p}
            for t, d, s, di, m, p in bp
        ],
        "alarms": [
            {"t": round(t, 3), "id": a, "priority": p, "state": st} for t, a, p, st in alarms
        ],
        "phases": [{"t": round(t, 3), "phase": p} for t, p in phases],
    }


class RecordReader:
    """Read-only access to the record for the console, off the event loop."""

    def __init__(self, path: str | Path, *, bp_devices: frozenset[str] = frozenset()) -> None:
        self.path = Path(path)
        self.bp_devices = bp_devices
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        return self._db

    async def entries(self, session_id: str) -> list[dict[str, Any]]:
        async with self._lock:
            return await asyncio.to_thread(lambda: session_entries(self._connect(), session_id))

    async def trend(self, session_id: str, *, points: int) -> dict[str, Any]:
        async with self._lock:
            return await asyncio.to_thread(
                lambda: session_trend(
                    self._connect(), session_id, points=points, bp_devices=self.bp_devices
                )
            )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
