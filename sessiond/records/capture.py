"""Time-coded capture files (DESIGN §6): every byte of every port, replayable.

    # sessiond-capture 1
    # port spo2 masimo-ascii1
    0.000 spo2 < 30322f...

Data lines are `SECONDS PORT DIRECTION HEX`: seconds since capture start (non-decreasing),
`<` from the device, `>` to it, the bytes as they arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

MAGIC = "# sessiond-capture 1"
FROM_DEVICE = "<"
TO_DEVICE = ">"


class CaptureError(ValueError):
    """A capture that cannot be read; names the line."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")
        self.line = line
        self.problem = problem


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    t: float
    port: str
    direction: str
    data: bytes


class CaptureReader:
    """Reads a capture: `ports` from the header, then records from iteration."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lineno = 0
        self.ports: dict[str, str] = {}
        self._first_data: str | None = None
        self._read_header()

    def _read_header(self) -> None:
        first = self._stream.readline()
        self._lineno = 1
        if first.rstrip("\r\n") != MAGIC:
            raise CaptureError(1, f"expected {MAGIC!r} as the first line")
        for line in self._stream:
            self._lineno += 1
            if not line.startswith("#"):
                self._first_data = line
                break
            words = line[1:].split()
            if len(words) == 3 and words[0] == "port":  # noqa: PLR2004  (# port NAME DECODER)
                if words[1] in self.ports:
                    raise CaptureError(self._lineno, f"port {words[1]!r} declared twice")
                self.ports[words[1]] = words[2]
            # Other comment lines are notes; readers ignore them.
        if not self.ports:
            raise CaptureError(self._lineno, "no '# port NAME DECODER' line")

    def __iter__(self) -> Iterator[CaptureRecord]:
        last_t = 0.0
        ports = self.ports
        pending = [self._first_data] if self._first_data is not None else []
        lineno = self._lineno - len(pending)
        for line in _chain(pending, self._stream):
            lineno += 1
            if line.startswith("#") or not line.strip():
                continue
            parts = line.split()
            if len(parts) != 4:  # noqa: PLR2004  (SECONDS PORT DIRECTION HEX)
                raise CaptureError(lineno, "expected 'SECONDS PORT DIRECTION HEX'")
            raw_t, port, direction, raw_hex = parts
            try:
                t = float(raw_t)
            except ValueError:
                raise CaptureError(lineno, f"bad time {raw_t!r}") from None
            if t < last_t:
                raise CaptureError(lineno, f"time {t} goes back (after {last_t})")
            if port not in ports:
                raise CaptureError(lineno, f"undeclared port {port!r}")
            if direction not in (FROM_DEVICE, TO_DEVICE):
                raise CaptureError(lineno, f"direction must be '<' or '>', not {direction!r}")
            try:
                data = bytes.fromhex(raw_hex)
            except ValueError:
                raise CaptureError(lineno, f"bad hex {raw_hex[:20]!r}") from None
            last_t = t
            yield CaptureRecord(t, port, direction, data)


def _chain(first: list[str], rest: TextIO) -> Iterator[str]:
    yield from first
    yield from rest


class CaptureWriter:
    """Appends records to a capture file; flushed about once a second of session time."""

    def __init__(self, path: Path, ports: Mapping[str, str]) -> None:
        self._file = path.open("w", encoding="utf-8")
        self._file.write(MAGIC + "\n")
        for name, decoder in ports.items():
            self._file.write(f"# port {name} {decoder}\n")
        self._file.flush()
        self._last_flush = 0.0

    def write(self, t: float, port: str, direction: str, data: bytes) -> None:
        self._file.write(f"{t:.3f} {port} {direction} {data.hex()}\n")
        if t - self._last_flush >= 1.0:
            self._file.flush()
            self._last_flush = t

    def close(self) -> None:
        self._file.close()
