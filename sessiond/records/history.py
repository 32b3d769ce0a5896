"""What the record holds of a room's open session, read back when a restarted daemon resumes it.

Times are put on the session's own axis from the recorded wall stamps (`started_t` plus the
wall time since the start), so records written by any earlier run read the same. Pure reads
on a connection, except that a session that cannot be resumed is closed with its reason.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sessiond.model import (
    INFUSION_ACTIONS,
    AlarmState,
    BaselineCaptured,
    Infusion,
    NurseAction,
    Priority,
    Quality,
    Route,
)
from sessiond.session.alarms import RestoredAlarm
from sessiond.session.state import OpenSession

if TYPE_CHECKING:
    import sqlite3

logger = logging.getLogger(__name__)

#: Flags under which a recorded oximeter value is not the patient's (see `INVALID_FOR_ALARMS`).
_INVALID = frozenset(
    name.lower()
    for name in ("SENSOR_OFF", "NO_SENSOR", "SEARCHING", "ARTIFACT")
    if name in Quality.__members__
)
#: Rows of oximetry read back for a pre-dose baseline at most (5 min of a 75 Hz device).
_MAX_OXIMETRY_ROWS = 30_000


@dataclass(frozen=True, slots=True)
class _Axis:
    """Maps recorded wall stamps onto the session's time axis."""

    started_t: float
    started_wall: datetime

    def t(self, wall: str) -> float:
        return self.started_t + (datetime.fromisoformat(wall) - self.started_wall).total_seconds()


def load_open_session(
    db: sqlite3.Connection,
    *,
    room_id: str,
    now_wall: datetime,
    max_age_s: float,
    baseline_window_s: float,
    nibp_devices: frozenset[str],
    virtual: bool = False,
) -> OpenSession | None:
    """The room's last session without an end, ready to resume, or None.

    A session started more than `max_age_s` ago, or (a clock set back) in the future, was
    left open: it is closed in the record with the reason, never resumed. With a `virtual`
    clock (a sped-up demo: its stamps run ahead of the real clock) the session resumes where
    its record stops, on the same virtual axis.
    """
    row = db.execute(
        "SELECT id, route, started_by, started_t, started_wall, dose_wall FROM sessions"
        " WHERE room = ? AND ended_t IS NULL ORDER BY started_wall DESC LIMIT 1",
        (room_id,),
    ).fetchone()
    if row is None:
        return None
    session_id, route, started_by, started_t, started_wall, dose_wall = row
    axis = _Axis(started_t, datetime.fromisoformat(started_wall))
    age = (now_wall - axis.started_wall).total_seconds()
    last_t = _last_t(db, session_id, axis)
    if not (age <= max_age_s if virtual else 0 <= age <= max_age_s):
        reason = (
            f"started {age:.0f} s ago, more than {max_age_s:.0f} s"
            if age > 0
            else "its start is later than now (clock set back, or a sped-up demo)"
        )
        _close(db, session_id, axis, last_t, reason)
        logger.warning("session %s was left open and is closed, not resumed: %s",
                       session_id, reason)  # fmt: skip
        return None
    dose_t = None if dose_wall is None else axis.t(dose_wall)
    baseline = _baseline(db, session_id, dose_t)
    oximetry: tuple[tuple[float, int | None, int | None], ...] = ()
    if dose_t is None:
        oximetry = _oximetry(db, session_id, axis, last_t - baseline_window_s, nibp_devices)
    return OpenSession(
        session_id=session_id,
        route=Route(route),
        started_by=started_by,
        started_t=started_t,
        started_wall=axis.started_wall,
        resume_t=last_t if virtual else started_t + age,
        dose_t=dose_t,
        baseline=baseline,
        dose_override=_dose_override(db, session_id),
        last_t=last_t,
        bp_readings=tuple(
            (axis.t(wall), float(sys), float(dia))
            for wall, sys, dia in db.execute(
                "SELECT wall, sys, dia FROM readings WHERE session_id = ?"
                " AND sys IS NOT NULL AND dia IS NOT NULL ORDER BY id",
                (session_id,),
            )
        ),
        oximetry=oximetry,
        alarms=_shown_alarms(db, session_id),
        paused_until=_paused_until(db, session_id, axis),
        notes=db.execute(
            "SELECT count(*) FROM actions WHERE session_id = ? AND action = 'note'", (session_id,)
        ).fetchone()[0],
        infusion=_infusion(db, session_id, axis),
        predose_missing=_predose_missing(db, session_id),
    )


def _last_t(db: sqlite3.Connection, session_id: str, axis: _Axis) -> float:
    walls = [
        db.execute(f"SELECT max(wall) FROM {table} WHERE session_id = ?", (session_id,)).fetchone()[  # noqa: S608
            0
        ]
        for table in ("readings", "alarms", "actions", "phases", "events", "device_events")
    ]
    known = [axis.t(w) for w in walls if w is not None]
    return max([axis.started_t, *known])


def _close(
    db: sqlite3.Connection, session_id: str, axis: _Axis, last_t: float, reason: str
) -> None:
    wall = (axis.started_wall + timedelta(seconds=last_t - axis.started_t)).isoformat()
    db.execute("BEGIN")
    try:
        db.execute(
            "INSERT INTO actions (session_id, t, wall, action, user, source, detail)"
            " VALUES (?, ?, ?, 'session_end', 'sessiond', 'not resumed', ?)",
            (session_id, last_t, wall, json.dumps({"reason": reason})),
        )
        db.execute(
            "UPDATE sessions SET ended_t = ?, ended_wall = ? WHERE id = ?",
            (last_t, wall, session_id),
        )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _baseline(
    db: sqlite3.Connection, session_id: str, dose_t: float | None
) -> BaselineCaptured | None:
    if dose_t is None:
        return None
    row = db.execute(
        "SELECT data FROM events WHERE session_id = ? AND type = 'baseline' ORDER BY id DESC"
        " LIMIT 1",
        (session_id,),
    ).fetchone()
    if row is None:
        return None
    data = json.loads(row[0])
    return BaselineCaptured(
        t=dose_t, sys=data["sys"], dia=data["dia"], spo2=data["spo2"], pr=data["pr"]
    )


def _predose_missing(db: sqlite3.Connection, session_id: str) -> tuple[str, ...] | None:
    """The pre-dose checklist's unconfirmed items as the nurse last submitted it."""
    for (detail,) in db.execute(
        "SELECT detail FROM actions WHERE session_id = ? AND action = 'checklist' ORDER BY id DESC",
        (session_id,),
    ):
        data = json.loads(detail)
        if data.get("kind") == "predose":
            return tuple(str(item) for item in data.get("missing", []))
    return None


def _dose_override(db: sqlite3.Connection, session_id: str) -> bool:
    row = db.execute(
        "SELECT detail FROM actions WHERE session_id = ? AND action = 'dose' LIMIT 1",
        (session_id,),
    ).fetchone()
    return row is not None and "override_reason" in json.loads(row[0])


def _infusion(db: sqlite3.Connection, session_id: str, axis: _Axis) -> Infusion | None:
    """The infusion as its recorded start, pauses, resumes and stop leave it."""
    infusion: Infusion | None = None
    for wall, action, user, source, detail in db.execute(
        "SELECT wall, action, user, source, detail FROM actions WHERE session_id = ?"
        " AND action IN (?, ?, ?, ?) ORDER BY id",
        (session_id, *INFUSION_ACTIONS),
    ):
        recorded = NurseAction(
            t=axis.t(wall), action=action, user=user, source=source, detail=json.loads(detail)
        )
        infusion = Infusion.fold(infusion, recorded)
    return infusion


def _oximetry(
    db: sqlite3.Connection,
    session_id: str,
    axis: _Axis,
    since_t: float,
    nibp_devices: frozenset[str],
) -> tuple[tuple[float, int | None, int | None], ...]:
    out: list[tuple[float, int | None, int | None]] = []
    rows = db.execute(
        "SELECT wall, device, spo2, pr, flags FROM readings WHERE session_id = ?"
        " AND sys IS NULL ORDER BY id DESC LIMIT ?",
        (session_id, _MAX_OXIMETRY_ROWS),
    )
    for wall, device, spo2, pr, flags in rows:
        t = axis.t(wall)
        if t < since_t:
            break
        if device in nibp_devices or _INVALID.intersection(flags.split(",")):
            continue
        out.append((t, spo2, pr))
    out.reverse()
    return tuple(out)


def _shown_alarms(db: sqlite3.Connection, session_id: str) -> tuple[RestoredAlarm, ...]:
    """Each alarm as shown at the end of the record, with whether it was acknowledged."""
    steps: list[tuple[datetime, int, tuple[Any, ...]]] = [
        (datetime.fromisoformat(row[0]), 1, row)
        for row in db.execute(
            "SELECT wall, alarm_id, priority, state, value, limit_value, device FROM alarms"
            " WHERE session_id = ? ORDER BY id",
            (session_id,),
        )
    ]
    steps += [
        (datetime.fromisoformat(wall), 0, (wall, json.loads(detail).get("alarm_id")))
        for wall, detail in db.execute(
            "SELECT wall, detail FROM actions WHERE session_id = ? AND action = 'ack' ORDER BY id",
            (session_id,),
        )
    ]
    steps.sort(key=lambda step: (step[0], step[1]))  # stable: record order within a table
    shown: dict[str, RestoredAlarm] = {}
    for _, kind, row in steps:
        if kind == 0:  # an acknowledgement: a latch resets, an active occurrence is silenced
            alarm = shown.get(str(row[1]))
            if alarm is not None:
                if alarm.state is AlarmState.LATCHED:
                    del shown[alarm.alarm_id]
                else:
                    shown[alarm.alarm_id] = replace(alarm, acknowledged=True)
            continue
        _, alarm_id, priority, state, value, limit, device = row
        if state == AlarmState.CLEARED.value:
            shown.pop(alarm_id, None)
            continue
        before = shown.get(alarm_id)
        now = RestoredAlarm(
            alarm_id=alarm_id,
            priority=Priority.from_label(priority),
            state=AlarmState(state),
            device=device,
            value=value,
            limit=limit,
        )
        raised = (
            before is None
            or now.priority > before.priority
            or (before.state is AlarmState.LATCHED and now.state is AlarmState.ACTIVE)
        )
        if before is not None and not raised:
            now = replace(now, acknowledged=before.acknowledged)
        shown[alarm_id] = now
    return tuple(shown.values())


def _paused_until(db: sqlite3.Connection, session_id: str, axis: _Axis) -> float | None:
    row = db.execute(
        "SELECT t, wall, data FROM events WHERE session_id = ? AND type = 'audio_pause'"
        " ORDER BY id DESC LIMIT 1",
        (session_id,),
    ).fetchone()
    if row is None:
        return None
    t, wall, data = row
    pause = json.loads(data)
    if not pause.get("paused") or pause.get("until_t") is None:
        return None
    return axis.t(wall) + (float(pause["until_t"]) - float(t))
