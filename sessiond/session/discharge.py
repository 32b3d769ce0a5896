"""Discharge readiness (DESIGN §5): shown to the nurse, updated live, never acted on. Pure.

Ready when every criterion holds: long enough since the dose (the route's minimum) and, after
an infusion, since its stop (never while it runs), no alarm shown, SpO2 at or above the limit
without a gap for the whole window, and the last SYS/DIA and PR within a margin of the
baseline. Evaluated on readings at most once a second and at the times a criterion can change
on its own (the minimum time, the end of the SpO2 window).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sessiond.model import DischargeReadiness
from sessiond.session.rules import INF

if TYPE_CHECKING:
    from sessiond.model import BaselineCaptured
    from sessiond.session.settings import DischargeConfig

#: Readings re-evaluate readiness at most this often (it is read by people).
EVALUATE_EVERY_S = 1.0


class DischargeCheck:
    """The readiness of one session, from its dose on."""

    def __init__(self, config: DischargeConfig, *, hold_s: float) -> None:
        self.config = config
        #: A gap in valid SpO2 longer than this restarts the SpO2 window.
        self.hold_s = hold_s
        self.ready = False
        self.unmet: tuple[str, ...] = ()
        self._after_dose: float | None = None
        self._after_stop: float | None = None
        self._infusing = False
        self._spo2_ok_since: float | None = None
        self._last_spo2 = -INF
        self._bp: tuple[float, float] | None = None
        self._pr: float | None = None
        self._next_eval = -INF
        self._last_eval = -INF
        #: It raised once: out of service (readiness is advice; `monitor_fault` says so).
        self.broken = False
        #: Changes when a reading may have brought `next_due` earlier (the SpO2 window
        #: started again): a caller's bound on it holds until then.
        self.moves = 0

    def reset(self) -> None:
        self.ready, self.unmet = False, ()
        self._after_dose = self._after_stop = None
        self._infusing = False
        self._spo2_ok_since, self._last_spo2 = None, -INF
        self._bp, self._pr = None, None
        self._next_eval = self._last_eval = -INF

    def dose(self, t: float, *, minimum_s: float) -> None:
        self._after_dose = t + minimum_s

    def infusion(self, *, stopped_t: float | None, minimum_s: float) -> None:
        """An infusion runs (`stopped_t` None), or stopped at `stopped_t`: readiness also
        needs `minimum_s` since its stop."""
        self._infusing = stopped_t is None
        self._after_stop = None if stopped_t is None else stopped_t + minimum_s

    @property
    def _earliest(self) -> float | None:
        """When the time criteria are met (INF while an infusion runs); None before the dose."""
        if self._after_dose is None:
            return None
        if self._infusing:
            return INF
        return max(self._after_dose, -INF if self._after_stop is None else self._after_stop)

    @property
    def active(self) -> bool:
        """Readiness is followed from the dose on."""
        return self._after_dose is not None

    def oximetry(self, t: float, spo2: int | None, pr: int | None) -> None:
        """An oximeter reading; values None when missing or invalid."""
        if spo2 is None or spo2 < self.config.spo2_min_pct:
            self._spo2_ok_since = None
        elif self._spo2_ok_since is None or t - self._last_spo2 > self.hold_s:
            self._spo2_ok_since = t
            self.moves += 1
        if spo2 is not None:
            self._last_spo2 = t
        if pr is not None:
            self._pr = pr

    def bp(self, sys: float, dia: float) -> None:
        self._bp = (sys, dia)

    def due(self, t: float) -> bool:
        """Whether a reading at `t` should re-evaluate (at most once a second)."""
        return self._after_dose is not None and t >= self._next_eval

    @property
    def next_eval_t(self) -> float:
        """A reading from this time on re-evaluates (INF before the dose)."""
        return self._next_eval if self._after_dose is not None else INF

    def next_due(self) -> float:
        """When a criterion may next change without a reading (None of them once ready)."""
        earliest = self._earliest
        if earliest is None or self.ready or self.broken:
            return INF
        times = [earliest]
        if self._spo2_ok_since is not None:
            times.append(self._spo2_ok_since + self.config.spo2_window_min * 60.0)
        return min((due for due in times if due > self._last_eval), default=INF)

    def evaluate(
        self, t: float, *, alarms_shown: bool, baseline: BaselineCaptured | None
    ) -> DischargeReadiness | None:
        """The readiness at `t`; an event only when it changed."""
        if self._earliest is None:
            return None
        self._next_eval, self._last_eval = t + EVALUATE_EVERY_S, t
        unmet = self._unmet(t, alarms_shown=alarms_shown, baseline=baseline)
        ready = not unmet
        changed = ready != self.ready
        self.ready, self.unmet = ready, unmet
        # Before the first ready, "not ready" is the assumed state: say nothing.
        return DischargeReadiness(t=t, ready=ready, unmet=unmet) if changed else None

    def _unmet(
        self, t: float, *, alarms_shown: bool, baseline: BaselineCaptured | None
    ) -> tuple[str, ...]:
        c = self.config
        unmet: list[str] = []
        if self._after_dose is None or t < self._after_dose:
            unmet.append("time since dose")
        if self._infusing:
            unmet.append("infusion running")
        elif self._after_stop is not None and t < self._after_stop:
            unmet.append("time since infusion stop")
        if alarms_shown:
            unmet.append("alarm shown")
        window = c.spo2_window_min * 60.0
        if (
            self._spo2_ok_since is None
            or t - self._spo2_ok_since < window
            or t - self._last_spo2 > self.hold_s
        ):
            unmet.append("spo2")
        margin = c.within_baseline_pct / 100.0
        bp, pr = self._bp, self._pr
        if (
            baseline is None
            or baseline.sys is None
            or baseline.dia is None
            or bp is None
            or not (_within(bp[0], baseline.sys, margin) and _within(bp[1], baseline.dia, margin))
        ):
            unmet.append("bp")
        if (
            baseline is None
            or baseline.pr is None
            or pr is None
            or not _within(pr, baseline.pr, margin)
        ):
            unmet.append("pr")
        return tuple(unmet)


def _within(value: float, base: float, margin: float) -> bool:
    return abs(value - base) <= base * margin
