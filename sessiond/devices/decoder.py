"""What every protocol decoder offers: sans-I/O, bytes in, readings out (DESIGN §3).

A decoder never raises on device data, never reads a clock (the arrival time comes in with
the bytes) and does no I/O. It counts what it could not use, so that a bad cable shows up
as numbers rather than as silence.

`feed(data, t)` takes what one read delivered; `feed_timed` takes many pieces at once, each
with its arrival time (a capture block in replay), and gives what feeding them one by one
gives: a frame takes the time of the piece its last byte came in, whatever the cut.

numpy is imported only by what works on many pieces at once (`feed_timed` and the timed
`Arrivals`): a live link feeding a read at a time never loads it.
"""

# ruff: noqa: PLC0415 - numpy is imported where the bulk path needs it (see the docstring)

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from sessiond.model import Reading


class Timed(NamedTuple):
    """What `feed_timed` decoded from many pieces of bytes, each with its arrival time."""

    readings: list[Reading]
    #: The piece each reading's frame ended in (its time is that piece's), in order.
    pieces: list[int]
    #: The pieces in which valid frames ended (ascending, each once): those of the readings,
    #: and those of frames that gave none (a device that repeats its numerics).
    frames: npt.NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """A protocol's line settings, as pyserial takes them."""

    baudrate: int
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1


#: An index past anything a decoder holds (`Arrivals.first` when nothing arrives in time).
NEVER = 1 << 62


class Arrivals:
    """Arrival times for a decoder's frames by where their last byte is in its buffer.

    `feed` has one time for everything; `feed_timed` a time per piece, and a frame takes the
    time of the piece its last byte came in. A timed clock also notes the piece of each
    Reading (`pieces`, in `stamp` or `at`) and of the frames (`run`, `frames`).
    """

    __slots__ = ("ends", "ends_array", "frame_runs", "off", "pieces", "t", "times", "times_array")

    def __init__(
        self,
        t: float,
        off: int = 0,
        ends: npt.NDArray[np.int64] | None = None,
        times: npt.NDArray[np.float64] | None = None,
    ) -> None:
        self.t = t
        self.off = off  # buffer offset of the first byte of this call's data
        self.ends_array = ends
        self.times_array = times
        self.ends: list[int] = [] if ends is None else ends.tolist()
        self.times: list[float] = [] if times is None else times.tolist()
        self.pieces: list[int] = []
        self.frame_runs: list[npt.NDArray[np.intp]] = []

    def at(self, end: int) -> float:
        """The time of the Reading whose frame ends at buffer offset `end` (notes its piece)."""
        if not self.times:
            return self.t
        j = bisect_left(self.ends, end - self.off)
        self.pieces.append(j)
        return self.times[j]

    def stamp(self, ends: npt.NDArray[np.intp]) -> tuple[list[float], list[int]]:
        """The times and pieces of frames ending at buffer offsets `ends` (notes nothing)."""
        if self.ends_array is None or self.times_array is None:
            return [self.t] * len(ends), []
        import numpy as np

        pieces = np.searchsorted(self.ends_array, ends - self.off)
        return self.times_array[pieces].tolist(), pieces.tolist()

    def first(self, when: float, s: int, size: int, k: int) -> int:
        """The first frame from index `k` of a run of `size`-byte frames at buffer offset `s`
        that arrived at `when` or later (`NEVER` when none did)."""
        if not self.times:
            return k if self.t >= when else NEVER
        j = bisect_left(self.times, when)
        if j == len(self.times):
            return NEVER
        # The first frame ending after piece j - 1 ended (buffer offset > that end).
        before = self.ends[j - 1] + self.off if j else -1
        return max(k, (before - s) // size if before >= s else 0)

    def run(self, s: int, e: int, size: int) -> None:
        """Valid frames of `size` bytes fill buffer[s:e]: note the pieces they ended in."""
        if self.ends_array is not None:
            import numpy as np

            frame_ends = np.arange(s + size - self.off, e - self.off + 1, size)
            self.frame_runs.append(np.searchsorted(self.ends_array, frame_ends))

    def timed(self, readings: list[Reading]) -> Timed:
        """The result of `feed_timed`: the readings, their pieces and the frames' pieces."""
        import numpy as np

        runs = self.frame_runs or [np.array(self.pieces, dtype=np.intp)]
        frames = np.concatenate(runs)
        if len(frames) > 1:
            frames = frames[np.concatenate(([True], frames[1:] != frames[:-1]))]
        return Timed(readings, self.pieces, frames)


class DecoderCounters:
    """What every decoder keeps: its port, its counters and the bytes of an unfinished frame."""

    def __init__(self, *, device: str) -> None:
        self.device = device
        self.records = 0
        self.frames_bad = 0
        self.bytes_skipped = 0
        self._pending = b""

    def feed(self, data: bytes, t: float) -> list[Reading]:
        raise NotImplementedError

    def feed_timed(
        self, data: bytes, ends: npt.NDArray[np.int64], times: npt.NDArray[np.float64]
    ) -> Timed:
        """`feed` for each piece `data[ends[i-1]:ends[i]]` that arrived at `times[i]`, in one
        call (a decoder that can do better in bulk overrides it; the result is the same)."""
        readings: list[Reading] = []
        pieces: list[int] = []
        frames: list[int] = []
        start = 0
        for i, (end, t) in enumerate(zip(ends.tolist(), times.tolist(), strict=True)):
            before = self.records
            got = self.feed(data[start:end], t)
            if got:
                readings += got
                pieces += [i] * len(got)
            if self.records != before:
                frames.append(i)
            start = end
        import numpy as np

        return Timed(readings, pieces, np.array(frames, dtype=np.intp))


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

    def feed_timed(
        self, data: bytes, ends: npt.NDArray[np.int64], times: npt.NDArray[np.float64]
    ) -> Timed:
        """Decode many pieces at once: `data[ends[i-1]:ends[i]]` arrived at `times[i]`
        (non-decreasing). The same as feeding the pieces one by one, in bulk."""
        ...


@runtime_checkable
class SendsWaveform(Protocol):
    """A decoder whose pleth is a waveform apart from its Readings (Contec, 60 packets/s)."""

    def waveform(self) -> tuple[int, ...]:
        """The pleth samples of the packets the last `feed` decoded, oldest first."""
        ...


@runtime_checkable
class AnswersCommands(Protocol):
    """A decoder of a device that speaks when spoken to (the NIBP module)."""

    def discard_partial(self) -> int:
        """A command goes out: give up an unfinished frame (it will never be finished)."""
        ...
