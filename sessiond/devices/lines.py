"""Framing shared by the text protocols (Masimo ASCII 1, Nonin ASCII): one record per line.

Lines end in CR, LF or both; NUL bytes (some devices pad with them) are dropped; a run
without a line end longer than the protocol's longest line is noise and is skipped, so
the buffer stays bounded whatever comes down the cable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from sessiond.devices.decoder import DecoderCounters

if TYPE_CHECKING:
    from sessiond.model import Reading


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
        self._pending = bytes(buf[end + 1 :])
        if len(self._pending) > self.max_line:
            self.bytes_skipped += len(self._pending)
            self._pending = b""
        lines = buf[:end].replace(b"\x00", b"").replace(b"\r", b"\n").split(b"\n")
        out: list[Reading] = []
        for line in lines:
            if line:
                reading = self._line(line, t)
                if reading is not None:
                    out.append(reading)
        return out

    def _line(self, line: bytes, t: float) -> Reading | None:
        """Decode one non-empty line that arrived at `t`; count what cannot be used."""
        raise NotImplementedError
