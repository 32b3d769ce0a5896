"""`[devices.NAME]`: one serial port, the protocol spoken on it and its line settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sessiond.settings import Strict


class DeviceConfig(Strict):
    path: str = ""
    decoder: Literal[
        "masimo-ascii1",
        "nonin-df7",
        "nonin-df2",
        "nonin-ascii",
        "contec-v7",
        "contec-legacy",
        "suntech-advantage",
    ] = "masimo-ascii1"
    #: None: the protocol's own baud rate.
    baudrate: int | None = Field(default=None, gt=0, le=4_000_000)
    #: Silence this long (s, at most a minute) is a lost link (reopen); None: the protocol's
    #: own watchdog.
    silence_timeout_s: float | None = Field(default=None, gt=0, le=60)
