"""What the record keeps of a session that has not ended, so that a restart can resume it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from sessiond.model import BaselineCaptured, Infusion, Route
    from sessiond.session.alarms import RestoredAlarm


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenSession:
    """A session without an end, on its own time axis (session seconds since the first run's
    clock started); `resume_t` is where that axis stands now, so one session has one axis."""

    session_id: str
    route: Route
    started_by: str
    started_t: float
    resume_t: float
    #: The wall stamp of `started_t` (a sped-up demo continues its virtual stamps from it).
    started_wall: datetime | None = None
    dose_t: float | None
    #: The baseline fixed at the dose, if the record has one.
    baseline: BaselineCaptured | None = None
    dose_override: bool = False
    #: The last thing the record holds of the session: monitoring stopped then.
    last_t: float | None = None
    #: Valid BP readings (t, SYS, DIA), oldest first.
    bp_readings: tuple[tuple[float, float, float], ...] = ()
    #: Valid oximeter values (t, SpO2, PR) of the baseline window, before a dose.
    oximetry: tuple[tuple[float, int | None, int | None], ...] = ()
    #: Alarms shown when the daemon stopped.
    alarms: tuple[RestoredAlarm, ...] = ()
    #: The end of an audio pause running when the daemon stopped.
    paused_until: float | None = None
    notes: int = 0
    #: The pre-dose checklist's unconfirmed items as last submitted (None: never submitted).
    predose_missing: tuple[str, ...] | None = None
    #: The infusion whose start was the dose, as its recorded actions leave it.
    infusion: Infusion | None = None
