"""A stand-in for the daemon's session control, for the console's own tests.

The end-to-end test drives the real daemon; these tests pin the console alone.
"""

from __future__ import annotations

from typing import Any

from sessiond.bus import Bus
from sessiond.config import ConsoleUser
from sessiond.console.auth import hash_password
from sessiond.model import NurseAction, Phase, PhaseChanged, Route, SessionStarted
from sessiond.session.commands import CommandRejected

PASSWORD = "correct horse battery"  # noqa: S105 - the test user's password
# Few iterations: the tests check the scheme, not its cost.
USERS = {"nurse1": ConsoleUser(password_hash=hash_password(PASSWORD, iterations=1_000))}


class StubControl:
    """Records commands and publishes the events the real session control would."""

    def __init__(self, *, bus: Bus, t: float = 1000.0) -> None:
        self.bus = bus
        self.t = t
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.session_id: str | None = None
        self.dose_t: float | None = None
        self.reject: str | None = None

    def now(self) -> float:
        return self.t

    async def start_session(self, *, route: Route, user: str, source: str) -> str:
        if self.reject is not None:
            raise CommandRejected(self.reject)
        if self.session_id is not None:
            raise CommandRejected("a session is already running")
        self.calls.append(("start", {"route": route, "user": user, "source": source}))
        self.session_id = f"sess-{len(self.calls)}"
        self.bus.publish(
            SessionStarted(t=self.t, session_id=self.session_id, route=route, user=user)
        )
        self.bus.publish(PhaseChanged(t=self.t, phase=Phase.BASELINE))
        return self.session_id

    async def mark_dose(self, *, user: str, source: str) -> None:
        if self.reject is not None:
            raise CommandRejected(self.reject)
        if self.session_id is None:
            raise CommandRejected("no session is running")
        if self.dose_t is not None:
            raise CommandRejected("the dose is already marked")
        self.calls.append(("dose", {"user": user, "source": source}))
        self.dose_t = self.t
        self.bus.publish(NurseAction(t=self.t, action="dose", user=user, source=source))
        self.bus.publish(PhaseChanged(t=self.t, phase=Phase.ONSET))

    async def end_session(self, *, user: str, source: str) -> None:
        if self.session_id is None:
            raise CommandRejected("no session is running")
        self.calls.append(("end", {"user": user, "source": source}))
        self.bus.publish(NurseAction(t=self.t, action="session_end", user=user, source=source))
        self.bus.publish(PhaseChanged(t=self.t, phase=Phase.ENDED))

    async def acknowledge(self, *, alarm_id: str, user: str, source: str) -> None:
        if self.reject is not None:
            raise CommandRejected(self.reject)
        self.calls.append(("ack", {"alarm_id": alarm_id, "user": user, "source": source}))
        self.bus.publish(
            NurseAction(t=self.t, action="ack", user=user, source=source,
                        detail={"alarm_id": alarm_id})
        )  # fmt: skip
