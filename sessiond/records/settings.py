"""`[records]`: where the record is, how long `sessiond purge` keeps it, what is buffered."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from sessiond.settings import Strict


class RecordsConfig(Strict):
    path: str = "sessiond.sqlite"
    #: `sessiond purge` without `--before` deletes sessions that ended more than this many
    #: days ago; 0 keeps every record (the daemon itself never deletes).
    keep_days: Annotated[int, Field(ge=0)] = 0
    #: Readings held in memory while the record cannot be written (≈ 0.2 KB each, the pleth
    #: is not in them); past it the oldest are dropped, counted and recorded.
    buffer_readings: int = Field(default=100_000, ge=100, le=10_000_000)
