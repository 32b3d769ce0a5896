"""Framing shared by the text protocols (Masimo ASCII 1, Nonin ASCII): one record per line.

Lines end in CR, LF or both; NUL bytes (some devices pad with them) are dropped; a run
without a line end longer than the protocol's longest line is noise and is skipped, so
the buffer stays bounded whatever comes down the cable.

`feed` (a read of a live link) is plain Python; `feed_timed` (many pieces: a capture block)
finds the line ends with numpy, which is imported only then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from sessiond.devices.decoder import DecoderCounters, Timed

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from sessiond.model import Reading

_LF, _CR = 10, 13


class LineDecoder(DecoderCounters):
    """Base of a sans-I/O text-line decoder: subclasses decode one line in `_line`."""

    #: A line longer than this without a terminator is noise.
    max_line: ClassVar[int]

    def feed(self, data: bytes, t: float) -> list[Reading]:
        buf = self._pending + data if self._pending else data
        end = max(buf.rfind(b"\n"), buf.rfind(b"\r"))
        if end < 0:
            if len(buf) > self.max_line:
                self.bytes_skipped += len(buf)
                buf = b""
            self._pending = bytes(buf)
            return []
        self._keep(buf[end + 1 :])
        lines = buf[:end].replace(b"\x00", b"").replace(b"\r", b"\n").split(b"\n")
        found = [line for line in lines if line]
        return [r for r in self._lines(found, [t] * len(found)) if r is not None]

    def feed_timed(
        self, data: bytes, ends: npt.NDArray[np.int64], times: npt.NDArray[np.float64]
    ) -> Timed:
        """The pieces in one pass: a line takes the time of the piece its end came in."""
        import numpy as np  # noqa: PLC0415 - the bulk path only (see the module docstring)

        off = len(self._pending)
        buf = self._pending + data if self._pending else data
        a = np.frombuffer(buf, dtype=np.uint8)
        term = np.flatnonzero((a == _LF) | (a == _CR))
        # Noise is skipped where a piece ends more than `max_line` bytes after the last line
        # end; when no stretch between line ends is that long, no piece boundary matters.
        gaps = np.diff(term, prepend=-1, append=len(buf)) - 1
        if not term.size or int(gaps.max()) > self.max_line:
            return super().feed_timed(data, ends, times)
        last = int(term[-1])
        self._pending = bytes(buf[last + 1 :])
        lines = buf[: last + 1].replace(b"\x00", b"").replace(b"\r", b"\n").split(b"\n")
        # Line k (of the split, empty ones included) ends at term[k].
        pieces = np.searchsorted(ends, term - off, side="right")
        keep = [k for k, line in enumerate(lines) if line]
        found = [lines[k] for k in keep]
        where = pieces[keep]
        readings: list[Reading] = []
        got: list[int] = []
        for reading, piece in zip(
            self._lines(found, times[where].tolist()), where.tolist(), strict=True
        ):
            if reading is not None:
                readings.append(reading)
                got.append(piece)
        frames = np.unique(np.array(got, dtype=np.intp))
        return Timed(readings, got, frames)

    def _keep(self, rest: bytes) -> None:
        """Keep the bytes after the last line end for the next read (noise past `max_line`
        is skipped)."""
        self._pending = bytes(rest)
        if len(self._pending) > self.max_line:
            self.bytes_skipped += len(self._pending)
            self._pending = b""

    def _lines(self, lines: list[bytes], times: list[float]) -> list[Reading | None]:
        """Decode non-empty lines, `lines[i]` arrived at `times[i]` (None where a line gives
        no reading); one by one unless a subclass does better in bulk."""
        line_fn = self._line
        return [line_fn(line, t) for line, t in zip(lines, times, strict=True)]

    def _line(self, line: bytes, t: float) -> Reading | None:
        """Decode one non-empty line that arrived at `t`; count what cannot be used."""
        raise NotImplementedError
