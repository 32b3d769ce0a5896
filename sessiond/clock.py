"""The injected clock: session seconds for durations, UTC for stamps, the speed factor here only.

Durations come from the event loop's clock (`loop.time()`), never from `time.monotonic()`, so
virtual-time loops and the simulation speed both work. Everything above the clock (links,
monitor scheduling, simulator) speaks session seconds and never sees the speed factor.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from sessiond.speed import DEVICE_TIMEOUT_MIN_REAL_S

if TYPE_CHECKING:
    from collections.abc import Callable


def utc_now() -> datetime:
    """The real UTC wall clock (aware)."""
    return datetime.now(UTC)


class Clock(Protocol):
    """What the daemon needs from time: a session clock and a wall clock."""

    def now(self) -> float:
        """Seconds since the clock started, on the session's (possibly scaled) time."""
        ...

    def wall(self, t: float) -> datetime:
        """The UTC wall time of session time `t`."""
        ...


class LoopClock:
    """Session time from `loop.time()`, scaled by `speed` (1 real time, 60 a minute a second)."""

    def __init__(
        self,
        *,
        speed: float = 1.0,
        loop: asyncio.AbstractEventLoop | None = None,
        wall_clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if speed <= 0:
            msg = f"speed must be positive, not {speed}"
            raise ValueError(msg)
        self.speed = speed
        self._loop = loop or asyncio.get_running_loop()
        self._origin = self._loop.time()
        self._wall_clock = wall_clock
        self._wall_origin = wall_clock()

    def now(self) -> float:
        return (self._loop.time() - self._origin) * self.speed

    def wall(self, t: float) -> datetime:
        if self.speed == 1.0:
            # Real time: the system clock, so that NTP corrections show in the record.
            return self._wall_clock() - timedelta(seconds=self.now() - t)
        return self._wall_origin + timedelta(seconds=t)

    def continue_at(self, t: float, *, wall: datetime | None = None) -> None:
        """Make now session time `t`: a resumed session keeps one time axis across runs.

        `wall` is the stamp `t` has on that axis when it is not now (a sped-up clock's
        stamps are virtual: they continue from the record's). Call before anything has read
        the clock for a deadline (the daemon does it first).
        """
        self._origin = self._loop.time() - t / self.speed
        self._wall_origin = (wall or self._wall_clock()) - timedelta(seconds=t)

    def session_seconds(self, real_seconds: float) -> float:
        """How much session time passes in `real_seconds` of real time."""
        return real_seconds * self.speed

    def device_timeout(self, seconds: float) -> float:
        """A device timeout of `seconds` session time, at least `DEVICE_TIMEOUT_MIN_REAL_S`
        of real time: unchanged in real time and at low speeds."""
        return max(seconds, self.session_seconds(DEVICE_TIMEOUT_MIN_REAL_S))

    def loop_time(self, t: float) -> float:
        """The `loop.time()` at which session time `t` is reached (for `loop.call_at`)."""
        return self._origin + t / self.speed

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds` of session time."""
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    async def sleep_until(self, t: float) -> None:
        """Sleep until session time `t`."""
        await asyncio.sleep(max(0.0, t - self.now()) / self.speed)

    def timeout(self, seconds: float) -> asyncio.Timeout:
        """An `asyncio.timeout` of `seconds` session time."""
        return asyncio.timeout(max(0.0, seconds) / self.speed)


class VirtualClock:
    """A clock that only moves when told to: replay and pure-logic tests."""

    def __init__(self, *, start: float = 0.0, wall_origin: datetime | None = None) -> None:
        self.t = start
        self._wall_origin = wall_origin or datetime(2000, 1, 1, tzinfo=UTC)

    def now(self) -> float:
        return self.t

    def wall(self, t: float) -> datetime:
        return self._wall_origin + timedelta(seconds=t)
