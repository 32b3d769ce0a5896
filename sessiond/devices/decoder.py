"""What every protocol decoder offers: sans-I/O, bytes in, readings out (DESIGN §3).

A decoder never raises on device data, never reads a clock (the arrival time comes in with
the bytes) and does no I/O. It counts what it could not use, so that a bad cable shows up
as numbers rather than as silence.

`feed(data, t)` takes what one read delivered; `feed_timed` takes many pieces at once, each
with its arrival time (a capture block in replay), and gives what feeding them one by one
gives: a frame takes the time of the piece its last byte came in, whatever the cut.

A device that repeats its numerics many times a second (a Contec at 60 packets/s, a Nonin
binary at 3) gives a Reading only when its values or flags change, and at least once a
second while they do not (DESIGN §6); its pleth is a waveform. `RepeatingDecoder` is that
rule, shared: a decoder hands it the keys of its packets (the bytes a Reading depends on),
stretch by stretch of equal keys, and Python touches only the packets that give a Reading.
"""

# ruff: noqa: PLC0415 - numpy is imported where a bulk path needs it: a live link never loads it

from __future__ import annotations

import math
import re
from bisect import bisect_left
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, NamedTuple, Protocol, runtime_checkable

from sessiond.model import Quality, Reading

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    import numpy as np
    import numpy.typing as npt

#: SpO2, PR, PI and flags, as an oximeter's Reading carries them.
Values = tuple[int | None, int | None, float | None, Quality]

#: With nothing changing, a Reading at least this often (DESIGN §6: "at least once a second").
EMIT_EVERY_S = 1.0


class Timed(NamedTuple):
    """What `feed_timed` decoded from many pieces of bytes, each with its arrival time."""

    #: In order; a bulk decode may give them in columns (`ReadingColumns`).
    readings: Sequence[Reading]
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


class Arrivals:
    """Arrival times for a decoder's frames by where their last byte is in its buffer.

    `feed` has one time for everything; `feed_timed` a time per piece, and a frame takes the
    time of the piece its last byte came in. A timed clock also notes the piece of each
    Reading (`pieces`) and of the frames (`run`, `frames`).
    """

    __slots__ = ("ends", "frame_runs", "off", "pieces", "t", "times")

    def __init__(
        self,
        t: float,
        off: int = 0,
        ends: npt.NDArray[np.int64] | None = None,
        times: npt.NDArray[np.float64] | None = None,
    ) -> None:
        self.t = t
        self.off = off  # buffer offset of the first byte of this call's data
        self.ends = ends
        self.times = times
        self.pieces: list[int] = []
        self.frame_runs: list[npt.NDArray[np.intp]] = []

    def run(self, s: int, e: int, size: int) -> None:
        """Valid frames of `size` bytes fill buffer[s:e]: note the pieces they ended in."""
        if self.ends is not None:
            import numpy as np

            frame_ends = np.arange(s + size - self.off, e - self.off + 1, size)
            self.frame_runs.append(np.searchsorted(self.ends, frame_ends))

    def times_of(self, s: int, count: int, size: int) -> tuple[list[float], list[int]]:
        """The arrival times and pieces of `count` frames of `size` bytes back to back from
        buffer offset `s` (a timed clock: `ends` and `times`)."""
        import numpy as np

        assert self.ends is not None
        assert self.times is not None
        frame_ends = np.arange(s + size - self.off, s + count * size - self.off + 1, size)
        pieces = np.searchsorted(self.ends, frame_ends)
        return self.times[pieces].tolist(), pieces.tolist()

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
        import numpy as np

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
        return Timed(readings, pieces, np.array(frames, dtype=np.intp))


class RepeatingDecoder(DecoderCounters):
    """A device that repeats its numerics many times a second: Readings on change and at
    least once a second, and the pleth as a waveform (DESIGN §6).

    A packet gives a Reading when its values or flags differ from the last Reading's, or when
    at least `EMIT_EVERY_S` has passed since it (and nothing changed): a change is reported
    at once, and the values are restated about once a second. `records` counts every packet
    decoded from a valid frame, emitted or not; `Timed.frames` has the pieces of them all, so
    that the monitor hears of the repeats. Whether a packet changes anything is told by its
    key (the bytes its Reading depends on): a subclass decodes runs of back-to-back packets of
    `_size` bytes and hands their keys to `_emit` (side by side in one string, the stretches
    of equal keys found by `_stretches`) or `_emit_words` (one machine word per key); it keeps
    the bytes its pleth is in in `_pleth`, made samples by `_samples` when asked.
    """

    #: Bytes in a packet, and in its key; `_stretches` matches a run of equal keys.
    _size: ClassVar[int]
    _key_width: ClassVar[int]
    _stretches: ClassVar[re.Pattern[bytes]]

    def __init__(self, *, device: str) -> None:
        super().__init__(device=device)
        self._last_key = b""
        self._last_values: Values | None = None
        #: A packet at or after this time gives a Reading even when nothing changed.
        self._next_emit = -math.inf
        self._pleth: list[bytes] = []

    def waveform(self) -> tuple[int, ...]:
        """The pleth samples of every packet the last `feed` decoded, oldest first."""
        return self._samples(b"".join(self._pleth))

    @staticmethod
    def _samples(pleth: bytes) -> tuple[int, ...]:
        """The samples in the bytes kept in `_pleth` (one byte each, unless overridden)."""
        return tuple(pleth)

    def feed(self, data: bytes, t: float) -> list[Reading]:
        self._pleth = []
        out: list[Reading] = []
        self._decode(data, Arrivals(t), out)
        return out

    def feed_timed(
        self, data: bytes, ends: npt.NDArray[np.int64], times: npt.NDArray[np.float64]
    ) -> Timed:
        import numpy as np

        if len(ends) == 1:  # one piece: `feed`, every frame of its time
            before = self.records
            got = self.feed(data, float(times[0]))
            frames = [0] if self.records != before else []
            return Timed(got, [0] * len(got), np.array(frames, dtype=np.intp))
        self._pleth = []
        out: list[Reading] = []
        if not len(ends):
            return Timed(out, [], np.empty(0, dtype=np.intp))
        clock = Arrivals(0.0, len(self._pending), ends, times)
        self._decode(data, clock, out)
        return clock.timed(out)

    def _decode(self, data: bytes, clock: Arrivals, out: list[Reading]) -> None:
        raise NotImplementedError

    @staticmethod
    def _values(key: bytes) -> Values:
        """SpO2, PR, PI and flags of a packet from its key."""
        raise NotImplementedError

    def _emit(self, keys: bytes, s: int, count: int, clock: Arrivals, out: list[Reading]) -> None:
        """Readings for the `count` packets at buffer offset `s`, whose keys are `keys`."""
        w = self._key_width
        if count == 1:
            self._emit_stretches([0, 1], [keys], s, clock, out)
            return
        starts = [m.start() // w for m in self._stretches.finditer(keys)]
        self._emit_stretches([*starts, count], [keys[a * w : a * w + w] for a in starts], s,
                             clock, out)  # fmt: skip

    def _emit_words(
        self,
        words: npt.NDArray[np.unsignedinteger[Any]],
        width: int,
        s: int,
        clock: Arrivals,
        out: list[Reading],
    ) -> None:
        """Readings for the packets at buffer offset `s` whose keys are `words`, one
        little-endian word of `width` bytes per packet (the bulk path)."""
        import numpy as np

        starts = [0, *(np.flatnonzero(words[1:] != words[:-1]) + 1).tolist()]
        raw = words.tobytes()
        keys = [raw[a * width : a * width + width] for a in starts]
        self._emit_stretches([*starts, len(words)], keys, s, clock, out)

    def _emit_stretches(
        self, bounds: list[int], keys: list[bytes], s: int, clock: Arrivals, out: list[Reading]
    ) -> None:
        """Readings for stretches of equal packets: stretch i is packets bounds[i] to
        bounds[i+1] - 1 of the run at buffer offset `s`, with key `keys[i]`."""
        size = self._size
        values_of = self._values
        last_key, last_values, next_emit = self._last_key, self._last_values, self._next_emit
        device, t = self.device, clock.t
        # `feed` has one time for all; `feed_timed` a time per packet, worked out per run.
        times: list[float] | None = None
        if clock.times is not None:
            times, pieces = clock.times_of(s, bounds[-1], size)
            note = clock.pieces.append
        for i, key in enumerate(keys):
            a = bounds[i]
            if key != last_key:
                last_key = key
                values = values_of(key)
                if values != last_values:
                    last_values = values
                    if times is not None:
                        t = times[a]
                        note(pieces[a])
                    spo2, pr, pi, flags = values
                    out.append(Reading(t=t, device=device, spo2=spo2, pr=pr, pi=pi, flags=flags))
                    # A microsecond of slack: capture times are rounded to the millisecond.
                    next_emit = t + EMIT_EVERY_S - 1e-6
                    a += 1
            end = bounds[i + 1]
            # The packets of the stretch that come a second or more after the last Reading
            # restate it (at one time: the first of them only).
            while a < end and (t if times is None else times[end - 1]) >= next_emit:
                assert last_values is not None
                if times is not None:
                    a = bisect_left(times, next_emit, a, end)
                    t = times[a]
                    note(pieces[a])
                spo2, pr, pi, flags = last_values
                out.append(Reading(t=t, device=device, spo2=spo2, pr=pr, pi=pi, flags=flags))
                next_emit = t + EMIT_EVERY_S - 1e-6
                a += 1
        self._last_key, self._last_values, self._next_emit = last_key, last_values, next_emit


def stretches(width: int) -> re.Pattern[bytes]:
    """A pattern whose matches are the runs of equal `width`-byte keys, one after another."""
    return re.compile(rb"(.{%d})\1*" % width, re.DOTALL)


def interleave(columns: Sequence[bytes], count: int) -> bytes:
    """Key fields side by side: packet i's key is `out[i*w : i*w + w]` (w columns)."""
    w = len(columns)
    if count == 1:
        return bytes(c[0] for c in columns)
    out = bytearray(count * w)
    for k, column in enumerate(columns):
        out[k::w] = column
    return bytes(out)


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
    """A decoder whose pleth is a waveform apart from its Readings (Contec, Nonin binary)."""

    def waveform(self) -> tuple[int, ...]:
        """The pleth samples of the packets the last `feed` decoded, oldest first."""
        ...


@runtime_checkable
class AnswersCommands(Protocol):
    """A decoder of a device that speaks when spoken to (the NIBP module)."""

    def discard_partial(self) -> int:
        """A command goes out: give up an unfinished frame (it will never be finished)."""
        ...
