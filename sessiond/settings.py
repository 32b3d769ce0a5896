"""The base of every configuration model, shared by `sessiond.config` and the parts it holds.

Kept apart from `sessiond.config` so that a part (room scenes, lights, music, MQTT) can define
its own settings next to its code while the configuration gathers them all.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Seconds = Annotated[float, Field(ge=0)]
Minutes = Annotated[float, Field(gt=0)]


class Strict(BaseModel):
    """Unknown keys are errors: a mistyped limit must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)
