"""When the monitor asks the BP module to measure (DESIGN §5). Pure.

A reading is due one phase interval after the later of the last request and the last valid
reading; the session start asks at once; forced readings fall at fixed times after the dose;
a medium or high BP alarm asks at once for a confirming reading. While an infusion runs (until
its stop) the interval is the infusion's; after the stop, the phase's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sessiond.model import NibpRequest, Phase
from sessiond.session.rules import INF

if TYPE_CHECKING:
    from sessiond.session.settings import NibpConfig


class NibpSchedule:
    """The BP measurement schedule of one session."""

    def __init__(self, config: NibpConfig) -> None:
        self.config = config
        self.interval_s: float | None = None
        self._anchor = -INF
        self._forced: list[float] = []
        self._phase: Phase | None = None
        #: An infusion started and not stopped yet.
        self.infusing = False

    def next_due(self) -> float:
        periodic = INF if self.interval_s is None else self._anchor + self.interval_s
        return min(periodic, self._forced[0]) if self._forced else periodic

    def set_phase(self, t: float, phase: Phase) -> list[NibpRequest]:
        self._phase = phase
        self.interval_s = self.config.interval_s(phase, infusion=self.infusing)
        if phase is Phase.ENDED:
            self._forced = []
            return []
        if phase is Phase.BASELINE:
            self._forced = []
            return [self.request(t, "session start")]
        if self._anchor == -INF:
            # A session taken up after a restart: measure now, then on schedule.
            return [self.request(t, "resumed")]
        return []

    def resume(self, now: float, phase: Phase, *, last_bp_t: float | None) -> list[NibpRequest]:
        """A session taken up after a restart: on schedule from its last BP reading, and at
        once when that reading is older than the phase's interval (never backdated)."""
        self._phase = phase
        self.interval_s = self.config.interval_s(phase, infusion=self.infusing)
        if self.interval_s is None:
            return []
        if last_bp_t is None or last_bp_t + self.interval_s <= now:
            return [self.request(now, "resumed")]
        self._anchor = last_bp_t
        return []

    def infusion(self, *, infusing: bool) -> None:
        """An infusion started (or stopped): the interval is its own (or the phase's) from
        now on, counted from the last request or reading."""
        self.infusing = infusing
        if self._phase is not None:
            self.interval_s = self.config.interval_s(self._phase, infusion=infusing)

    def dose(self, t: float, *, now: float) -> None:
        """The dose at `t`; forced readings already past at `now` (a resume) are not taken."""
        forced = (t + m * 60.0 for m in self.config.forced_after_dose_min)
        self._forced = sorted(f for f in forced if f >= now)

    def measured(self, t: float) -> None:
        """A valid reading arrived: the interval counts from it."""
        self._anchor = max(self._anchor, t)

    def request(self, t: float, reason: str) -> NibpRequest:
        self._anchor = t
        return NibpRequest(t=t, reason=reason)

    def advance(self, now: float) -> list[NibpRequest]:
        out: list[NibpRequest] = []
        while (due := self.next_due()) <= now:
            forced = bool(self._forced) and self._forced[0] == due
            if forced:
                self._forced.pop(0)
            out.append(self.request(due, "after dose" if forced else "schedule"))
        return out
