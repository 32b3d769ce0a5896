"""Rules on the episodic BP readings of DESIGN §5: bp_high, bp_rise, dose_gate, nibp_*.

A BP reading stands for the patient until the next one, so these rules evaluate once per
completed measurement, with no delay and no staleness: a condition is raised by a reading, and
clears once a reading back inside with the hysteresis margin has held for the clear delay
(DESIGN §5: 5 s), unless the next reading says otherwise. A failed measurement neither raises
nor clears them. Pure, like every rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sessiond.model import Priority
from sessiond.session.rules import INF, Level, LevelState, Rule

if TYPE_CHECKING:
    from sessiond.model import Phase
    from sessiond.session.settings import (
        BpHighConfig,
        BpRiseConfig,
        DoseGateConfig,
        NibpErrorConfig,
        NibpOverdueConfig,
    )


def _over(
    sys: float, dia: float, sys_limit: float, dia_limit: float, *, strict: bool
) -> tuple[float, float] | None:
    """(value, limit) of the first of SYS, DIA at or above its limit (above if `strict`)."""
    if (sys > sys_limit) if strict else (sys >= sys_limit):
        return sys, sys_limit
    if (dia > dia_limit) if strict else (dia >= dia_limit):
        return dia, dia_limit
    return None


def _observe(
    level: Level, t: float, over: tuple[float, float] | None, *, inside: bool, clear_delay: float
) -> None:
    """One reading against one level: the value and limit reported are the one violated."""
    if over is not None:
        level.limit = over[1]
    level.update(
        t,
        violating=over is not None,
        inside=inside,
        clear_delay=clear_delay,
        value=None if over is None else over[0],
    )


class BpHighRule(Rule):
    """`bp_high`: medium at the first high reading; high when confirmed, or at once if critical."""

    def __init__(self, config: BpHighConfig) -> None:
        self.config = config
        self.medium = Level(
            priority=Priority.MEDIUM, limit=config.medium_sys_mmhg, delay=0, latched=False
        )
        self.high = Level(
            priority=Priority.HIGH, limit=config.high_sys_mmhg, delay=0, latched=config.high_latched
        )
        super().__init__("bp_high", [self.medium, self.high])
        #: Consecutive readings at or above the high limits.
        self.run = 0

    def observe(self, t: float, sys: float, dia: float) -> None:
        c, h = self.config, self.config.hysteresis_mmhg
        medium = _over(sys, dia, c.medium_sys_mmhg, c.medium_dia_mmhg, strict=False)
        inside = sys <= c.medium_sys_mmhg - h and dia <= c.medium_dia_mmhg - h
        _observe(self.medium, t, medium, inside=inside, clear_delay=c.clear_delay_s)
        high = _over(sys, dia, c.high_sys_mmhg, c.high_dia_mmhg, strict=False)
        self.run = self.run + 1 if high is not None else 0
        critical = _over(sys, dia, c.critical_sys_mmhg, c.critical_dia_mmhg, strict=False)
        confirmed = critical or (high if self.run >= c.high_confirmations else None)
        inside = sys <= c.high_sys_mmhg - h and dia <= c.high_dia_mmhg - h
        _observe(self.high, t, confirmed, inside=inside, clear_delay=c.clear_delay_s)


class BpRiseRule(Rule):
    """`bp_rise`: after the dose, SYS or DIA this far above the pre-dose baseline."""

    def __init__(self, config: BpRiseConfig) -> None:
        self.config = config
        self.level = Level(priority=config.level, limit=0, delay=0, latched=False)
        super().__init__("bp_rise", [self.level])

    def observe(self, t: float, sys: float, dia: float, *, baseline: tuple[float, float]) -> None:
        c = self.config
        sys_limit, dia_limit = baseline[0] + c.sys_rise_mmhg, baseline[1] + c.dia_rise_mmhg
        over = _over(sys, dia, sys_limit, dia_limit, strict=False)
        h = c.hysteresis_mmhg
        inside = sys <= sys_limit - h and dia <= dia_limit - h
        _observe(self.level, t, over, inside=inside, clear_delay=c.clear_delay_s)


class DoseGateRule(Rule):
    """`dose_gate`: before the dose, the baseline so far against the pre-dose limits."""

    def __init__(self, config: DoseGateConfig) -> None:
        self.config = config
        self.low = Level(priority=Priority.LOW, limit=config.low_sys_mmhg, delay=0, latched=False)
        self.high = Level(
            priority=Priority.HIGH, limit=config.high_sys_mmhg, delay=0, latched=False
        )
        super().__init__("dose_gate", [self.low, self.high])

    def observe(self, t: float, baseline: tuple[float, float]) -> None:
        c, h = self.config, self.config.hysteresis_mmhg
        sys, dia = baseline
        low = _over(sys, dia, c.low_sys_mmhg, c.low_dia_mmhg, strict=True)
        inside = sys <= c.low_sys_mmhg - h and dia <= c.low_dia_mmhg - h
        _observe(self.low, t, low, inside=inside, clear_delay=c.clear_delay_s)
        high = _over(sys, dia, c.high_sys_mmhg, c.high_dia_mmhg, strict=False)
        inside = sys <= c.high_sys_mmhg - h and dia <= c.high_dia_mmhg - h
        _observe(self.high, t, high, inside=inside, clear_delay=c.clear_delay_s)

    @property
    def closed(self) -> bool:
        """Dosing needs an override with a reason."""
        return self.high.shown

    def end(self) -> None:
        """The dose was given: the gate has done its work."""
        for level in self.levels:
            level.reset()


class NibpErrorRule(Rule):
    """`nibp_error`: raised by a failed measurement, cleared by the next valid reading."""

    def __init__(self, config: NibpErrorConfig) -> None:
        self.config = config
        self.first = Level(
            priority=Priority.from_label(config.priority), limit=1, delay=0, latched=False
        )
        self.repeated = Level(
            priority=Priority.from_label(config.escalated_priority),
            limit=config.escalate_after_failures,
            delay=0,
            latched=False,
        )
        super().__init__("nibp_error", [self.first, self.repeated])
        self.failures = 0

    def failed(self, phase: Phase | None) -> None:
        self.failures += 1
        self.first.state = LevelState.ON
        if self.failures >= self.config.escalate_after_failures and (
            phase in self.config.escalate_phases
        ):
            self.repeated.state = LevelState.ON

    def measured(self) -> None:
        self.failures = 0
        for level in self.levels:
            level.reset()


class NibpOverdueRule(Rule):
    """`nibp_overdue`: no valid BP reading for the phase's interval plus a grace period."""

    def __init__(self, config: NibpOverdueConfig) -> None:
        self.grace_s = config.grace_min * 60.0
        self.level = Level(
            priority=Priority.from_label(config.priority), limit=0, delay=0, latched=False
        )
        super().__init__("nibp_overdue", [self.level])
        self.last_valid: float | None = None
        self.interval_s: float | None = None
        #: Nothing is due before this (a resumed session: the time it was down is not known
        #: to the second, and an alarm is never backdated).
        self.not_before = -INF

    def _schedule(self) -> None:
        level = self.level
        if level.state is LevelState.ON or self.last_valid is None or self.interval_s is None:
            level.due = INF
        else:
            level.due = max(self.last_valid + self.interval_s + self.grace_s, self.not_before)

    def start(self, t: float) -> None:
        """A session started: the first reading is due from now."""
        self.last_valid = t
        self.level.reset()
        self._schedule()

    def set_interval(self, now: float, interval_s: float | None) -> None:
        """The current phase's BP interval (None: no schedule, e.g. the session ended).

        A technical alarm clears as soon as its condition is gone: a longer interval may
        make the last reading recent enough again.
        """
        self.interval_s = interval_s
        level = self.level
        if interval_s is None or (
            level.state is LevelState.ON
            and self.last_valid is not None
            and self.last_valid + interval_s + self.grace_s > now
        ):
            level.reset()
        self._schedule()

    def measured(self, t: float) -> None:
        self.last_valid = t
        self.level.reset()
        self._schedule()

    def advance(self, now: float) -> None:
        if self.level.due <= now:
            self.level.state, self.level.due = LevelState.ON, INF
