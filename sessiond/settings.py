"""The base of every configuration model, shared by `sessiond.config` and the parts it holds.

Kept apart from `sessiond.config` so that a part (room scenes, lights, music, MQTT) can define
its own settings next to its code while the configuration gathers them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from collections.abc import Sequence

#: A duration of the room or a link (fades, ramps); an hour is a typo, not a setting.
Seconds = Annotated[float, Field(ge=0, le=3600)]
#: A duration of the session (phases, intervals); a day is longer than any session.
Minutes = Annotated[float, Field(gt=0, le=24 * 60)]


class Strict(BaseModel):
    """Unknown keys are errors: a mistyped limit must never be silently ignored."""

    # No NaN or infinity anywhere: `limit = nan` would switch an alarm off without a word.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class KeyProblems(ValueError):
    """What a model's validator found wrong with keys inside it, each reported at its key."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{key}: {problem}" for key, problem in problems))
        #: (dotted key below the model, what is wrong with it)
        self.problems = tuple(problems)
