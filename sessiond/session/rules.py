"""The building blocks of alarm rules: the occurrence state machine and the oximeter rules.

A `Level` is one priority of one alarm: an IEC 60601-1-8 occurrence (idle → pending during its
delay → on → clearing → latched) with its deadline. A `Rule` is an alarm id made of levels and
shows the most urgent one. Pure: time is passed in, deadlines are reported by `next_due`.
"""

from __future__ import annotations

import enum
import math
from typing import TYPE_CHECKING

from sessiond.model import AlarmState, Phase, Priority, Quality

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sessiond.config import (
        DeviceLostConfig,
        LimitAlarmConfig,
        LimitLevel,
        TechnicalAlarmConfig,
    )

INF = math.inf
#: Frame flags of a poor signal: artifact, pulse search, low signal.
POOR_SIGNAL = int(Quality.ARTIFACT | Quality.SEARCHING | Quality.LOW_SIGNAL)


class LevelState(enum.Enum):
    IDLE = "idle"
    PENDING = "pending"
    ON = "on"
    CLEARING = "clearing"
    LATCHED = "latched"


class Level:
    """One priority level of one alarm: its occurrence state machine and its deadline."""

    __slots__ = ("delay", "due", "latched", "limit", "priority", "remaining", "state", "value")

    def __init__(self, *, priority: Priority, limit: float, delay: float, latched: bool) -> None:
        self.priority = priority
        self.limit = limit
        self.delay = delay
        self.latched = latched
        self.state = LevelState.IDLE
        self.due = INF
        #: A frozen deadline's remaining time (invalid data neither advances nor resets it).
        self.remaining: float | None = None
        self.value: float | None = None

    def update(
        self, t: float, *, violating: bool, inside: bool, clear_delay: float, value: float | None
    ) -> None:
        """A valid observation at `t`: `violating` the limit, or `inside` it with hysteresis."""
        if self.remaining is not None:
            self.due, self.remaining = t + self.remaining, None
        state = self.state
        if state is LevelState.IDLE:
            if violating:
                self.value = value
                self.state, self.due = LevelState.PENDING, t + self.delay
        elif state is LevelState.PENDING:
            if not violating:
                self.state, self.due = LevelState.IDLE, INF
            else:
                self.value = value
        elif state is LevelState.ON:
            if inside:
                self.state, self.due = LevelState.CLEARING, t + clear_delay
        elif state is LevelState.CLEARING:
            if not inside:
                self.state, self.due = LevelState.ON, INF
        elif violating:  # LATCHED: the condition is back, same occurrence
            self.value = value
            self.state = LevelState.ON
        self.fire(t)

    def fire(self, now: float) -> None:
        """Move on if the deadline has come."""
        if self.due > now:
            return
        if self.state is LevelState.PENDING:
            self.state, self.due = LevelState.ON, INF
        elif self.state is LevelState.CLEARING:
            self.state = LevelState.LATCHED if self.latched else LevelState.IDLE
            self.due = INF

    def freeze(self, at: float) -> None:
        """Stop the clock of a pending or clearing deadline as of `at`."""
        if self.due < INF and self.remaining is None:
            self.remaining, self.due = max(0.0, self.due - at), INF

    def reset(self) -> None:
        """Back to idle (acknowledged latch, or the condition vanished for a technical alarm)."""
        self.state, self.due, self.remaining = LevelState.IDLE, INF, None

    @property
    def shown(self) -> bool:
        return self.state in (LevelState.ON, LevelState.CLEARING, LevelState.LATCHED)


class Rule:
    """An alarm id: levels, and what it currently shows."""

    def __init__(self, alarm_id: str, levels: Iterable[Level]) -> None:
        self.alarm_id = alarm_id
        self.levels = sorted(levels, key=lambda lv: lv.priority)

    def next_due(self) -> float:
        return min((lv.due for lv in self.levels), default=INF)

    def advance(self, now: float) -> None:
        for lv in self.levels:
            lv.fire(now)

    def acknowledge(self) -> None:
        """Operator action: clear the latched levels whose condition has gone (ALARM RESET)."""
        for lv in self.levels:
            if lv.state is LevelState.LATCHED:
                lv.reset()

    def display(self) -> tuple[Level, AlarmState] | None:
        """The most urgent level shown, and whether its condition is still there."""
        top: Level | None = None
        for lv in self.levels:
            if lv.shown:
                top = lv
        if top is None:
            return None
        return top, AlarmState.LATCHED if top.state is LevelState.LATCHED else AlarmState.ACTIVE


class LimitRule(Rule):
    """A physiological limit on one value (SpO2, PR ...), below or above, with hysteresis."""

    def __init__(
        self, alarm_id: str, *, param: str, below: bool, config: LimitAlarmConfig, hold_s: float
    ) -> None:
        levels = [
            Level(priority=priority, limit=lv.limit, delay=lv.delay_s, latched=lv.latched)
            for priority, lv in _limit_levels(config)
        ]
        super().__init__(alarm_id, levels)
        self.param = param
        self.below = below
        self.hysteresis = config.hysteresis
        self.clear_delay = config.clear_delay_s
        #: How long a reading's value stands for the patient before it is stale.
        self.hold_s = hold_s
        self.valid_until = -INF

    def observe(self, t: float, value: float | None, *, valid: bool) -> None:
        if value is None or not valid:
            self._freeze(t)
            return
        self.valid_until = t + self.hold_s
        h = self.hysteresis
        for lv in self.levels:
            if self.below:
                violating, inside = value < lv.limit, value >= lv.limit + h
            else:
                violating, inside = value > lv.limit, value <= lv.limit - h
            lv.update(
                t, violating=violating, inside=inside, clear_delay=self.clear_delay, value=value
            )

    def _freeze(self, at: float) -> None:
        for lv in self.levels:
            lv.freeze(at)

    def next_due(self) -> float:
        due = super().next_due()
        # Staleness is itself a deadline, but only while a level's clock is running.
        return min(due, self.valid_until) if due < INF else due

    def advance(self, now: float) -> None:
        if self.valid_until <= now:
            # The last value went stale before these deadlines: freeze them where it stopped.
            for lv in self.levels:
                if lv.due > self.valid_until:
                    lv.freeze(self.valid_until)
        super().advance(now)


class TechnicalRule(Rule):
    """A technical condition of the device's frames; clears as soon as it is gone."""

    def __init__(self, alarm_id: str, *, config: TechnicalAlarmConfig) -> None:
        super().__init__(
            alarm_id, [Level(priority=config.level, limit=0, delay=config.delay_s, latched=False)]
        )

    def observe(self, t: float, violating: bool) -> None:
        for lv in self.levels:
            lv.update(t, violating=violating, inside=not violating, clear_delay=0.0, value=None)


class SilenceRule(Rule):
    """`device_lost` for one streaming device: no valid frame for a while."""

    def __init__(self, alarm_id: str, *, config: DeviceLostConfig, since: float) -> None:
        self.medium = Level(
            priority=Priority.MEDIUM,
            limit=config.medium_after_s,
            delay=config.medium_after_s,
            latched=False,
        )
        self.high = Level(
            priority=Priority.HIGH,
            limit=config.high_after_s,
            delay=config.high_after_s,
            latched=config.high_latched,
        )
        super().__init__(alarm_id, [self.medium, self.high])
        self.high_phases = frozenset(config.high_phases)
        self.phase: Phase | None = None
        self.last_frame = since
        self._schedule()

    def _schedule(self) -> None:
        medium, high = self.medium, self.high
        medium.due = self.last_frame + medium.delay if medium.state is LevelState.IDLE else INF
        # The high level only counts silence in the phases where it is critical.
        critical = self.phase in self.high_phases and high.state is not LevelState.ON
        high.due = self.last_frame + high.delay if critical else INF

    def frame(self, t: float) -> None:
        """A valid frame arrived: the link is alive (a latched high stays until acknowledged)."""
        self.last_frame = t
        self.medium.reset()
        if self.high.state is LevelState.ON:
            self.high.state = LevelState.LATCHED if self.high.latched else LevelState.IDLE
        self._schedule()

    def set_phase(self, now: float, phase: Phase) -> None:
        self.phase = phase
        self._schedule()
        self.advance(now)

    def acknowledge(self) -> None:
        super().acknowledge()
        self._schedule()

    def advance(self, now: float) -> None:
        for level in self.levels:
            if level.due <= now:
                level.state = LevelState.ON
        self._schedule()


def _limit_levels(config: LimitAlarmConfig) -> list[tuple[Priority, LimitLevel]]:
    out: list[tuple[Priority, LimitLevel]] = []
    if config.medium is not None:
        out.append((Priority.MEDIUM, config.medium))
    if config.high is not None:
        out.append((Priority.HIGH, config.high))
    return out
