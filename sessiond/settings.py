"""The base of the pydantic settings models, shared by `sessiond.config` and the parts it holds.

Kept apart from `sessiond.config` so that a part (room, console, devices, records) can define
its own settings next to its code while the configuration gathers them all. The session's
settings are plain dataclasses instead (`sessiond.checked`): the monitor loads without pydantic.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from sessiond.errors import KeyProblems as KeyProblems  # noqa: PLC0414  (its old home re-exports it)

#: A duration of the room or a link (fades, ramps); an hour is a typo, not a setting.
Seconds = Annotated[float, Field(ge=0, le=3600)]


class Strict(BaseModel):
    """Unknown keys are errors: a mistyped limit must never be silently ignored."""

    # No NaN or infinity anywhere: `limit = nan` would switch an alarm off without a word.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
