"""What every protocol decoder offers: sans-I/O, bytes in, readings out (DESIGN §3).

A decoder never raises on device data, never reads a clock (the arrival time comes in with
the bytes) and does no I/O. It counts what it could not use, so that a bad cable shows up
as numbers rather than as silence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sessiond.model import Reading


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """A protocol's line settings, as pyserial takes them."""

    baudrate: int
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1


class DecoderCounters:
    """What every decoder keeps: its port, its counters and the bytes of an unfinished frame."""

    def __init__(self, *, device: str) -> None:
        self.device = device
        self.records = 0
        self.frames_bad = 0
        self.bytes_skipped = 0
        self._pending = b""


class Decoder(Protocol):
    """A sans-I/O decoder for one device port."""

    protocol: ClassVar[str]
    serial: ClassVar[SerialSettings]
    #: A streaming device sends continuously (an oximeter); the NIBP module only when asked.
    streaming: ClassVar[bool]
    #: Silence longer than this (session seconds) means the link is lost.
    silence_timeout_s: ClassVar[float]

    device: str
    #: Records decoded from valid frames (with values or not).
    records: int
    #: Frames rejected: bad checksum, impossible value, broken fields, cut short.
    frames_bad: int
    #: Bytes thrown away while hunting for the next frame.
    bytes_skipped: int

    def __init__(self, *, device: str) -> None: ...

    def feed(self, data: bytes, t: float) -> list[Reading]:
        """Decode `data` that arrived at session time `t`; keeps partial frames for later."""
        ...


@runtime_checkable
class AnswersCommands(Protocol):
    """A decoder of a device that speaks when spoken to (the NIBP module)."""

    def discard_partial(self) -> int:
        """A command goes out: give up an unfinished frame (it will never be finished)."""
        ...
