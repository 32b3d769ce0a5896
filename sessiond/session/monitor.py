"""The monitor of one room: the session timeline and the alarm engine, driven by readings and time.

Pure: time comes in with each call. The daemon and `sessiond replay` drive it the same way
(`advance(t)` up to each reading's time, then `on_reading`, and `advance` at `next_due()`
when nothing arrives); only their clocks differ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sessiond.model import NurseAction, Phase, PhaseChanged, SessionStarted
from sessiond.session.alarms import INF, AlarmEngine
from sessiond.session.commands import CommandRejected
from sessiond.session.timeline import Timeline

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sessiond.config import Config
    from sessiond.model import Event, Reading, Route
    from sessiond.session.state import OpenSession


class Monitor:
    """Timeline + alarms for one room. Every method returns the events it caused, in time order."""

    def __init__(self, *, config: Config, streaming: Iterable[str], start: float = 0.0) -> None:
        self.timeline = Timeline(config=config.timeline)
        self.alarms = AlarmEngine(config=config.alarms, streaming=streaming, start=start)
        self.session_id: str | None = None

    @property
    def phase(self) -> Phase | None:
        return self.timeline.phase

    def next_due(self) -> float:
        due = self.timeline.next_due()
        return min(INF if due is None else due, self.alarms.next_due())

    def advance(self, now: float) -> list[Event]:
        """Everything due up to `now`, each event stamped with the time it was due."""
        out: list[Event] = []
        while (due := self.next_due()) <= now:
            out += self._phase_events(self.timeline.advance(due))
            out += self.alarms.advance(due)
        return out

    def on_reading(self, reading: Reading) -> list[Event]:
        """Evaluate a reading; call `advance(reading.t)` first so that earlier deadlines fire."""
        return list(self.alarms.on_reading(reading))

    def start_session(
        self, t: float, *, session_id: str, route: Route, user: str, source: str
    ) -> list[Event]:
        if self.session_id is not None and self.phase is not Phase.ENDED:
            msg = "a session is already running; end it first"
            raise CommandRejected(msg)
        self.session_id = session_id
        out: list[Event] = [SessionStarted(t=t, session_id=session_id, route=route, user=user)]
        out.append(
            NurseAction(
                t=t, action="session_start", user=user, source=source, detail={"route": route.value}
            )
        )
        return out + self._phase_events(self.timeline.start(t, route))

    def resume(self, now: float, *, session: OpenSession) -> list[Event]:
        """Take up a session from the record after a restart, at the point its timeline is now.

        The phase changes that fell while the daemon was down are not replayed as events;
        the session continues in the phase it is in now.
        """
        self.session_id = session.session_id
        self.timeline.start(session.started_t, session.route)
        if session.dose_t is not None:
            self.timeline.dose(session.dose_t)
        self.timeline.advance(now)
        phase = self.timeline.phase
        assert phase is not None
        out: list[Event] = [
            SessionStarted(t=session.started_t, session_id=session.session_id,
                           route=session.route, user=session.started_by, resumed=True,
                           dose_t=session.dose_t),
            NurseAction(t=now, action="session_resume", user="sessiond", source="restart"),
            PhaseChanged(t=now, phase=phase),
        ]  # fmt: skip
        return out + self.alarms.set_phase(now, phase)

    def mark_dose(self, t: float, *, user: str, source: str) -> list[Event]:
        if self.session_id is None or self.phase is Phase.ENDED:
            msg = "no session is running: start one first"
            raise CommandRejected(msg)
        if self.timeline.dose_t is not None:
            msg = "the dose was already marked"
            raise CommandRejected(msg)
        out: list[Event] = [NurseAction(t=t, action="dose", user=user, source=source)]
        return out + self._phase_events(self.timeline.dose(t))

    def end_session(self, t: float, *, user: str, source: str) -> list[Event]:
        if self.session_id is None or self.phase is Phase.ENDED:
            msg = "no session is running"
            raise CommandRejected(msg)
        out: list[Event] = [NurseAction(t=t, action="session_end", user=user, source=source)]
        return out + self._phase_events(self.timeline.end(t))

    def acknowledge(self, t: float, *, alarm_id: str, user: str, source: str) -> list[Event]:
        shown = self.alarms.showing(alarm_id)
        if shown is None:
            msg = f"{alarm_id} is not active"
            raise CommandRejected(msg)
        out: list[Event] = [NurseAction(t=t, action="ack", user=user, source=source,
                                        detail={"alarm_id": alarm_id,
                                                "priority": shown[0].label})]  # fmt: skip
        return out + self.alarms.acknowledge(t, alarm_id)

    def _phase_events(self, changes: list[PhaseChanged]) -> list[Event]:
        out: list[Event] = []
        for change in changes:
            out.append(change)
            out += self.alarms.set_phase(change.t, change.phase)
        return out
