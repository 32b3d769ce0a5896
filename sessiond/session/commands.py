"""What the console, the CLI and MQTT may ask of a running session, and how a refusal looks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sessiond.model import Route


class CommandRejected(Exception):
    """A command that cannot be carried out now; nothing was changed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SessionControl(Protocol):
    """The session commands every front end (console, MQTT, CLI) goes through.

    Each returns once its nurse action is in the record, so what a user was told was done
    survives a crash.
    """

    def now(self) -> float:
        """The session clock (seconds)."""
        ...

    async def start_session(self, *, route: Route, user: str, source: str) -> str:
        """Start a new session; returns its random id. Raises `CommandRejected`."""
        ...

    async def mark_dose(self, *, user: str, source: str) -> None:
        """Record the dose now. Raises `CommandRejected` (no session, already dosed)."""
        ...

    async def end_session(self, *, user: str, source: str) -> None:
        """End the running session (discharge). Raises `CommandRejected` when none runs."""
        ...

    async def acknowledge(self, *, alarm_id: str, user: str, source: str) -> None:
        """Acknowledge an alarm now. Raises `CommandRejected` when it is not shown."""
        ...
