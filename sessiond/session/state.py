"""What the record keeps of a session that has not ended, so that a restart can resume it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sessiond.model import BaselineCaptured, Route


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenSession:
    """A session without an end, its times already on the restarted daemon's session clock."""

    session_id: str
    route: Route
    started_by: str
    started_t: float
    dose_t: float | None
    #: The baseline fixed at the dose, if the record has one.
    baseline: BaselineCaptured | None = None
