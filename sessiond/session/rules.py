"""The building blocks of alarm rules: the occurrence state machine and the oximeter rules.

A `Level` is one priority of one alarm: an IEC 60601-1-8 occurrence (idle → pending during its
delay → on → clearing → latched) with its deadline. A `Rule` is an alarm id made of levels and
shows the most urgent one, active while any of its levels has its condition. Pure: time is
passed in, deadlines are reported by `next_due`.

The engine calls rules once per reading, so the per-reading methods (`observe`, `frame`) say
whether they changed anything the engine must look at: a level's state, or a deadline that may
have come earlier. A rule with every level idle and its value inside its limits costs a few
comparisons and reports nothing.

Two guarantees hold for every rule (clinical.md §5.1, IEC 60601-1-8 latching):
- a latch never hides a new violation: a latched level whose condition returns is on again,
  and a lower level coming on under a latched higher one shows the alarm active;
- an acknowledgement given while the condition lasts covers its end: the level does not
  latch, so no state exists that no action and no reading can leave.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sessiond.model import AlarmState, Phase, Priority, Quality

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sessiond.session.settings import (
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

    __slots__ = (
        "acked",
        "delay",
        "due",
        "latched",
        "limit",
        "priority",
        "remaining",
        "state",
        "value",
    )

    def __init__(self, *, priority: Priority, limit: float, delay: float, latched: bool) -> None:
        self.priority = priority
        self.limit = limit
        self.delay = delay
        self.latched = latched
        self.state = LevelState.IDLE
        self.due = INF
        #: A frozen deadline's remaining time (invalid data neither advances nor resets it).
        self.remaining: float | None = None
        #: The value that holds now (the last one seen while the condition lasts).
        self.value: float | None = None
        #: A nurse acknowledged this occurrence while its condition lasted.
        self.acked = False

    def update(
        self, t: float, *, violating: bool, inside: bool, clear_delay: float, value: float | None
    ) -> bool:
        """A valid observation at `t`: `violating` the limit, or `inside` it with hysteresis.

        True when the state or the deadline changed (the value alone does not count).
        """
        state, due = self.state, self.due
        if self.remaining is not None:
            self.due, self.remaining = t + self.remaining, None
        if violating:
            self.value = value
        if state is LevelState.IDLE:
            if violating:
                self.state, self.due = LevelState.PENDING, t + self.delay
        elif state is LevelState.PENDING:
            if not violating:
                self.state, self.due = LevelState.IDLE, INF
        elif state is LevelState.ON:
            if inside:
                self.state, self.due = LevelState.CLEARING, t + clear_delay
        elif state is LevelState.CLEARING:
            if not inside:
                self.state, self.due = LevelState.ON, INF
        elif violating:  # LATCHED: the condition is back, same occurrence, sounding again
            self.state, self.acked = LevelState.ON, False
        self.fire(t)
        return self.state is not state or self.due != due

    def fire(self, now: float) -> None:
        """Move on if the deadline has come."""
        if self.due > now:
            return
        if self.state is LevelState.PENDING:
            self.state, self.due = LevelState.ON, INF
        elif self.state is LevelState.CLEARING:
            self.end()

    def end(self) -> None:
        """The condition is gone: latch until acknowledged, unless acknowledged already."""
        if self.latched and not self.acked:
            self.state, self.due, self.remaining = LevelState.LATCHED, INF, None
        else:
            self.reset()

    def acknowledge(self) -> None:
        """Operator action: reset a latch whose condition is gone; cover an ongoing one's end."""
        if self.state is LevelState.LATCHED:
            self.reset()
        elif self.state in (LevelState.ON, LevelState.CLEARING):
            self.acked = True

    def freeze(self, at: float) -> None:
        """Stop the clock of a pending or clearing deadline as of `at`."""
        if self.due < INF and self.remaining is None:
            self.remaining, self.due = max(0.0, self.due - at), INF

    def reset(self) -> None:
        """Back to idle (acknowledged latch, or the condition vanished for a technical alarm)."""
        self.state, self.due, self.remaining, self.acked = LevelState.IDLE, INF, None, False

    @property
    def shown(self) -> bool:
        return self.state in _SHOWN

    @property
    def holding(self) -> bool:
        """Shown with its condition still there (on, or within its clear delay)."""
        return self.state in _HOLDING


_SHOWN = frozenset({LevelState.ON, LevelState.CLEARING, LevelState.LATCHED})
_HOLDING = frozenset({LevelState.ON, LevelState.CLEARING})


@dataclass(frozen=True, slots=True)
class Display:
    """What one alarm id shows: its priority, whether its condition is there, and the value
    and limit of the most urgent level whose condition holds (None when only latched)."""

    priority: Priority
    state: AlarmState
    value: float | None
    limit: float | None


class Rule:
    """An alarm id: levels, and what it currently shows."""

    #: The device the alarm is about, for technical alarms (`device_lost` names its device).
    device: str | None = None

    def __init__(self, alarm_id: str, levels: Iterable[Level]) -> None:
        self.alarm_id = alarm_id
        self.levels = sorted(levels, key=lambda lv: lv.priority)

    def next_due(self) -> float:
        due = INF
        for lv in self.levels:
            due = min(due, lv.due)
        return due

    def advance(self, now: float) -> None:
        for lv in self.levels:
            lv.fire(now)

    def acknowledge(self) -> None:
        """Operator action: reset latched levels (ALARM RESET); ongoing ones will not latch."""
        for lv in self.levels:
            lv.acknowledge()

    def display(self) -> Display | None:
        """The most urgent level shown; active while any shown level's condition holds.

        A lower level on under a latched higher one shows the alarm active at the latched
        priority: the latch stays visible and the new violation is not hidden by it.
        """
        top: Level | None = None
        holding: Level | None = None
        for lv in self.levels:  # ascending priority
            state = lv.state
            if state is not LevelState.IDLE and state is not LevelState.PENDING:  # shown
                top = lv
                if state is not LevelState.LATCHED:
                    holding = lv
        if top is None:
            return None
        if holding is None:
            return Display(top.priority, AlarmState.LATCHED, None, None)
        return Display(top.priority, AlarmState.ACTIVE, holding.value, holding.limit)


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
        #: A delay frozen by invalid or missing data longer than this starts again.
        self.freeze_max_s = config.freeze_max_s
        self._invalid_since: float | None = None

    def observe(self, t: float, value: float | None, *, valid: bool) -> bool:
        """A reading's value at `t`; True when a level's state or a deadline changed."""
        if value is None or not valid:
            if self._invalid_since is None:
                self._invalid_since = min(t, self.valid_until)
            self._freeze(t)  # deadlines only move later
            return False
        below = self.below
        for lv in self.levels:
            if lv.state is not LevelState.IDLE or (value < lv.limit if below else value > lv.limit):
                return self._evaluate(t, value)
        # Every level idle (no deadline: nothing pending to abandon) and no limit crossed:
        # no level would move, only the value's freshness does.
        self.fresh(t)
        return False

    def fresh(self, t: float) -> None:
        """A valid value at `t` that moves no level (every level idle, no limit crossed)."""
        self._invalid_since = None
        self.valid_until = t + self.hold_s

    def _evaluate(self, t: float, value: float) -> bool:
        # Invalid since the last valid value went stale, or since the first invalid one.
        since = self._invalid_since if self._invalid_since is not None else self.valid_until
        if t - since > self.freeze_max_s:
            self.abandon_pending()  # pending is not shown, and its deadline only goes later
        self._invalid_since = None
        stale_at = self.valid_until
        self.valid_until = t + self.hold_s
        h = self.hysteresis
        changed = False
        for lv in self.levels:
            if self.below:
                violating, inside = value < lv.limit, value >= lv.limit + h
            else:
                violating, inside = value > lv.limit, value <= lv.limit - h
            if lv.update(
                t, violating=violating, inside=inside, clear_delay=self.clear_delay, value=value
            ):
                changed = True
        # Staleness is a deadline too (`next_due`): earlier only if time went back.
        return changed or self.valid_until < stale_at

    def _freeze(self, at: float) -> None:
        for lv in self.levels:
            if lv.due < INF:  # only a running deadline freezes (sensor-off frames: none)
                lv.freeze(at)

    def abandon_pending(self) -> None:
        """A delay frozen too long is dropped: the value that started it is history."""
        for lv in self.levels:
            if lv.state is LevelState.PENDING:
                lv.reset()

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

    def __init__(
        self, alarm_id: str, *, config: TechnicalAlarmConfig, device: str | None = None
    ) -> None:
        self.level = Level(priority=config.level, limit=0, delay=config.delay_s, latched=False)
        super().__init__(alarm_id, [self.level])
        self.device = device

    def observe(self, t: float, violating: bool) -> bool:
        """The condition at `t`; True when the level's state or deadline changed."""
        level = self.level
        if not violating and level.state is LevelState.IDLE:
            return False  # idle and nothing to start: no deadline, nothing moves
        return level.update(
            t, violating=violating, inside=not violating, clear_delay=0.0, value=None
        )


class SilenceRule(Rule):
    """`device_lost` for one streaming device: no valid frame for a while."""

    def __init__(
        self, alarm_id: str, *, config: DeviceLostConfig, since: float, device: str | None = None
    ) -> None:
        self.device = device
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
        #: The phase is one where the high level counts silence (set with the phase).
        self._critical = False
        self.last_frame = since
        self._schedule()

    def _schedule(self) -> None:
        medium, high = self.medium, self.high
        medium.due = self.last_frame + medium.delay if medium.state is LevelState.IDLE else INF
        # The high level only counts silence in the phases where it is critical.
        critical = self._critical and high.state is not LevelState.ON
        high.due = self.last_frame + high.delay if critical else INF

    def lost_after(self) -> float:
        """How long after a frame, in the usual state (no level on), a level fires if no
        other frame comes."""
        return min(self.medium.delay, self.high.delay if self._critical else INF)

    @property
    def usual(self) -> bool:
        """No level on: a frame only moves the deadlines later (`frame`'s usual case)."""
        return self.medium.state is LevelState.IDLE and self.high.state is not LevelState.ON

    def frame(self, t: float) -> bool:
        """A valid frame arrived: the link is alive (a latched high stays until acknowledged).

        True when a level's state changed or a deadline came earlier.
        """
        medium, high = self.medium, self.high
        if medium.state is LevelState.IDLE and high.state is not LevelState.ON:
            # The usual frame: no state moves, the deadlines only move later.
            earlier = t < self.last_frame
            self.last_frame = t
            medium.due = t + medium.delay  # `reset` of an idle level changes nothing else
            high.due = t + high.delay if self._critical else INF
            return earlier
        self.last_frame = t
        medium.reset()
        if high.state is LevelState.ON:
            high.end()
        self._schedule()
        return True

    def restart(self, t: float) -> None:
        """The daemon (re)started at `t`: silence counts from now, not from a former run."""
        self.last_frame = t
        self._schedule()

    def set_phase(self, now: float, phase: Phase) -> None:
        self.phase = phase
        self._critical = phase in self.high_phases
        self._schedule()
        self.advance(now)

    def acknowledge(self) -> None:
        super().acknowledge()
        self._schedule()

    def advance(self, now: float) -> None:
        for level in self.levels:
            if level.due <= now:
                # A latched high lost again is a new violation: it sounds again.
                level.state, level.acked = LevelState.ON, False
        self._schedule()


def _limit_levels(config: LimitAlarmConfig) -> list[tuple[Priority, LimitLevel]]:
    out: list[tuple[Priority, LimitLevel]] = []
    if config.medium is not None:
        out.append((Priority.MEDIUM, config.medium))
    if config.high is not None:
        out.append((Priority.HIGH, config.high))
    return out
