"""The pre-dose baseline of DESIGN §5, captured while the session is in its baseline phase.

BP: the mean of the pre-dose readings (the last `bp_readings` when there are more). SpO2 and PR:
the medians of the valid values in the window before the dose. Oximeter values are sampled at
most once a second, so a 75 Hz device costs no more than a 1 Hz one.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from sessiond.model import BaselineCaptured

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sessiond.session.settings import BaselineConfig

#: Oximeter samples kept for the medians: one a second.
SAMPLE_EVERY_S = 1.0


class Baseline:
    """Pre-dose BP readings and oximeter samples; fixed by `capture` at the dose."""

    def __init__(self, config: BaselineConfig) -> None:
        self._window_s = config.window_min * 60.0
        self._bp: deque[tuple[float, float]] = deque(maxlen=config.bp_readings)
        self._samples: deque[tuple[float, int | None, int | None]] = deque()
        self._next_sample = -float("inf")
        self.captured: BaselineCaptured | None = None

    def reset(self) -> None:
        self._bp.clear()
        self._samples.clear()
        self._next_sample = -float("inf")
        self.captured = None

    @property
    def next_sample_t(self) -> float:
        """A valid oximeter reading from this time on is sampled."""
        return self._next_sample

    @property
    def collecting(self) -> bool:
        return self.captured is None

    def add_bp(self, sys: float, dia: float) -> None:
        self._bp.append((sys, dia))

    def bp(self) -> tuple[float, float] | None:
        """The BP baseline so far (before the dose) or as captured (after it)."""
        if self.captured is not None:
            if self.captured.sys is None or self.captured.dia is None:
                return None
            return self.captured.sys, self.captured.dia
        if not self._bp:
            return None
        n = len(self._bp)
        return sum(s for s, _ in self._bp) / n, sum(d for _, d in self._bp) / n

    def add_oximetry(self, t: float, spo2: int | None, pr: int | None) -> None:
        """A valid oximeter reading at `t` (sampled once a second; older ones are dropped)."""
        if t >= self._next_sample:  # most readings are not sampled: nothing else to do
            self.add_oximetry_run((t,), (spo2,), (pr,))

    def add_oximetry_run(
        self, ts: Sequence[float], spo2s: Sequence[int | None], prs: Sequence[int | None]
    ) -> None:
        """`add_oximetry` for each reading of a run of valid ones, in time order."""
        samples, next_sample = self._samples, self._next_sample
        sampled = None
        for t, spo2, pr in zip(ts, spo2s, prs, strict=True):
            if t >= next_sample:
                next_sample = t + SAMPLE_EVERY_S
                samples.append((t, spo2, pr))
                sampled = t
        self._next_sample = next_sample
        # Dropped once, for the last sample: what each sample in turn would have dropped.
        while sampled is not None and samples and samples[0][0] < sampled - self._window_s:
            samples.popleft()

    def capture(self, t: float) -> BaselineCaptured:
        """Fix the baseline at the dose time `t`."""
        import statistics  # noqa: PLC0415  (once a session; its import is slow for replay's start)

        since = t - self._window_s
        spo2 = [s for ts, s, _ in self._samples if ts >= since and s is not None]
        pr = [p for ts, _, p in self._samples if ts >= since and p is not None]
        bp = self.bp()
        self.captured = BaselineCaptured(
            t=t,
            sys=None if bp is None else round(bp[0], 1),
            dia=None if bp is None else round(bp[1], 1),
            spo2=float(statistics.median(spo2)) if spo2 else None,
            pr=float(statistics.median(pr)) if pr else None,
        )
        self._samples.clear()
        return self.captured

    def restore(self, captured: BaselineCaptured) -> None:
        """A resumed session: the baseline its record holds."""
        self.captured = captured
