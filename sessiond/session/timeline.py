"""The session timeline of DESIGN §4: which phase, and when the next phase begins. Pure.

The phases keep the dose as their anchor. An infusion (its start is the dose) still running
when the effect window would end holds `effect` until its stop plus the route's tail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sessiond.model import Phase, PhaseChanged

if TYPE_CHECKING:
    from sessiond.model import Route
    from sessiond.session.settings import TimelineConfig


class Timeline:
    """Phases of one session, driven by nurse actions and by time since the dose."""

    def __init__(self, *, config: TimelineConfig) -> None:
        self._config = config
        self.phase: Phase | None = None
        self.route: Route | None = None
        self.started_t: float | None = None
        self.dose_t: float | None = None
        self._onset_end: float | None = None
        self._effect_end: float | None = None
        #: An infusion started and not stopped yet (paused or running).
        self.infusing = False

    def start(self, t: float, route: Route) -> list[PhaseChanged]:
        self.route, self.started_t, self.dose_t = route, t, None
        self._onset_end = self._effect_end = None
        self.infusing = False
        return self._enter(t, Phase.BASELINE)

    def dose(self, t: float) -> list[PhaseChanged]:
        assert self.route is not None, "dose before the session started"
        self.dose_t = t
        timing = self._config.for_route(self.route)
        self._onset_end = t + timing.onset_min * 60.0
        self._effect_end = t + timing.effect_end_min * 60.0
        return self._enter(t, Phase.ONSET)

    def infusion_started(self) -> None:
        """The dose is the start of an infusion: `effect` lasts at least until its stop."""
        self.infusing = True

    def infusion_stopped(self, t: float) -> None:
        """The infusion stopped at `t`: past the effect window's end, `effect` ends a tail later."""
        self.infusing = False
        assert self.route is not None, "infusion before the session started"
        if self._effect_end is not None and t >= self._effect_end:
            self._effect_end = t + self._config.for_route(self.route).infusion_tail_min * 60.0

    def end(self, t: float) -> list[PhaseChanged]:
        self._onset_end = self._effect_end = None
        self.infusing = False
        return self._enter(t, Phase.ENDED)

    def next_due(self) -> float | None:
        if self.phase is Phase.ONSET:
            return self._onset_end
        if self.phase is Phase.EFFECT:
            return None if self.infusing else self._effect_end
        return None

    def advance(self, now: float) -> list[PhaseChanged]:
        """Phase changes due at or before `now`, each stamped with the time it was due."""
        out: list[PhaseChanged] = []
        while (due := self.next_due()) is not None and due <= now:
            out += self._enter(due, Phase.EFFECT if self.phase is Phase.ONSET else Phase.RECOVERY)
        return out

    def _enter(self, t: float, phase: Phase) -> list[PhaseChanged]:
        self.phase = phase
        return [PhaseChanged(t=t, phase=phase)]
