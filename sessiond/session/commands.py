"""What the console, the CLI and MQTT may ask of a running session, and how a refusal looks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pydantic import ValidationError

    from sessiond.model import DoseUnit, Route


class CommandRejected(Exception):
    """A command that cannot be carried out now; nothing was changed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RecordUnavailable(CommandRejected):
    """A command refused, or left unconfirmed, because the record cannot be written now."""


def describe_invalid(exc: ValidationError, *, whole: str) -> str:
    """One line for a command body that failed validation (`whole` names the body itself)."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or whole
    match error["type"]:
        case "json_invalid":
            return f"{whole}: not valid JSON"
        case "extra_forbidden":
            return f"{where}: unknown field"
        case "missing":
            return f"{where}: required"
        case _:
            return f"{where}: {error['msg']}"


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

    async def mark_dose(self, *, user: str, source: str, reason: str | None = None) -> None:
        """Record the dose now; `reason` overrides a high `dose_gate`.

        Raises `CommandRejected` (no session, already dosed, gate closed without a reason).
        """
        ...

    async def start_infusion(
        self,
        *,
        amount: float,
        unit: DoseUnit,
        planned_min: float,
        user: str,
        source: str,
        reason: str | None = None,
    ) -> None:
        """Start an infusion now: it is the dose (the same gate; `reason` overrides it), with
        its plan. Raises `CommandRejected` (no session, already dosed, a second start, gate
        closed without a reason, an amount or duration out of range)."""
        ...

    async def pause_infusion(self, *, reason: str, user: str, source: str) -> None:
        """Pause the running infusion. Raises `CommandRejected` (none running, already paused)."""
        ...

    async def resume_infusion(self, *, reason: str, user: str, source: str) -> None:
        """Resume the paused infusion. Raises `CommandRejected` (none, not paused)."""
        ...

    async def stop_infusion(
        self,
        *,
        amount: float,
        unit: DoseUnit | None,
        user: str,
        source: str,
        reason: str | None = None,
    ) -> None:
        """Stop the infusion with the amount given (`unit` None: the plan's).

        Raises `CommandRejected` (no infusion started, already stopped, amount out of range).
        """
        ...

    async def end_session(self, *, user: str, source: str) -> None:
        """End the running session (discharge). Raises `CommandRejected` when none runs, or
        while an infusion runs."""
        ...

    async def acknowledge(self, *, alarm_id: str, user: str, source: str) -> None:
        """Acknowledge an alarm now. Raises `CommandRejected` when it is not shown."""
        ...

    async def pause_audio(self, *, user: str, source: str) -> None:
        """Pause alarm audio (all alarms) for the configured time; a new high alarm ends it."""
        ...

    async def add_note(self, *, text: str, user: str, source: str) -> None:
        """Add a free-text note to the session record. Raises `CommandRejected` (no session)."""
        ...

    async def measure_nibp(self, *, user: str, source: str) -> None:
        """Ask the BP module to measure now. Raises `CommandRejected` (no BP device, busy)."""
        ...


class RoomControl(Protocol):
    """Manual changes to the room's set and setting (console and MQTT).

    An override lasts until the next phase unless `pinned`; `scene` None returns to the
    phase's own scene.
    """

    async def set_scene(self, *, scene: str | None, pinned: bool, user: str, source: str) -> None:
        """Apply a named scene from config. Raises `CommandRejected` (unknown scene)."""
        ...

    async def set_volume(self, *, volume_pct: int, pinned: bool, user: str, source: str) -> None:
        """Set the music volume (0-100 %). Raises `CommandRejected` (out of range)."""
        ...


class Control(SessionControl, RoomControl, Protocol):
    """Everything a front end (console, MQTT) may ask of the daemon."""


class EntryControl(Protocol):
    """What the console adds to the record by hand: manual entries and checklists."""

    async def add_entry(self, *, entry: dict[str, Any], user: str, source: str) -> None:
        """A BP taken by hand, a side effect, a dose given. Raises `CommandRejected`."""
        ...

    async def checklist(
        self, *, kind: str, checked: list[str], reason: str | None, user: str, source: str
    ) -> None:
        """Confirm the `predose` or `discharge` checklist. Raises `CommandRejected`."""
        ...


class ConsoleControl(Control, EntryControl, Protocol):
    """Everything the nurse console may ask of the daemon."""
