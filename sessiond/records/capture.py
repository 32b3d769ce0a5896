"""Time-coded capture files (DESIGN §6): every byte of every port, replayable.

    # sessiond-capture 1
    # port spo2 masimo-ascii1
    0.000 spo2 < 30322f...

Data lines are `SECONDS PORT DIRECTION HEX`: seconds since capture start (finite,
non-decreasing), `<` from the device, `>` to it, the bytes as they arrived. Anything else is
a `CaptureError` naming its line.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from sessiond.devices import PROTOCOLS

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from pathlib import Path

MAGIC = "# sessiond-capture 1"
FROM_DEVICE = "<"
TO_DEVICE = ">"
#: Capture times and replay's `--dose-at`/`--end-at` stay within a year: far beyond any
#: capture, and replay schedules every deadline up to the time it is given.
MAX_SECONDS = 366 * 24 * 3600.0


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


def parse_seconds(text: str) -> float:
    """`text` as seconds since the capture start; `ValueError` saying why it is not."""
    try:
        value = float(text)
    except ValueError:
        msg = f"not a number of seconds: {text!r}"
        raise ValueError(msg) from None
    # NaN passes every comparison, infinity never ends a replay: refused before any.
    if not math.isfinite(value):
        msg = f"not a finite number of seconds: {text!r}"
    elif value < 0:
        msg = f"negative seconds: {text!r}"
    elif value > MAX_SECONDS:
        msg = f"more than a year of seconds: {text!r}"
    else:
        return value
    raise ValueError(msg)


def open_capture(path: Path) -> TextIO:
    """`path` for `CaptureReader`, which names the line of any bytes that are not UTF-8."""
    # Strict decoding fails on a whole chunk, before the reader knows which line it is in.
    return path.open(encoding="utf-8", errors="surrogateescape")


class CaptureReader:
    """Reads a capture: `ports` from the header, then records from iteration."""

    def __init__(self, stream: Iterable[str]) -> None:
        self._lines = _numbered(stream)
        self.ports: dict[str, str] = {}
        self._first_data: tuple[int, str] | None = None
        self._read_header()

    def _read_header(self) -> None:
        _, first = next(self._lines, (1, ""))
        if first.rstrip("\r\n") != MAGIC:
            raise CaptureError(1, f"expected {MAGIC!r} as the first line")
        lineno = 1
        for lineno, line in self._lines:
            if not line.strip():
                continue
            if not line.startswith("#"):
                self._first_data = (lineno, line)
                break
            words = line[1:].split()
            if words[:1] == ["port"]:
                self._declare(lineno, words[1:])
            # Other comment lines are notes; readers ignore them.
        if not self.ports:
            raise CaptureError(lineno, "no '# port NAME DECODER' line")

    def _declare(self, lineno: int, words: list[str]) -> None:
        if len(words) != 2:  # noqa: PLR2004  (# port NAME DECODER)
            raise CaptureError(lineno, "expected '# port NAME DECODER'")
        name, decoder = words
        if name in self.ports:
            raise CaptureError(lineno, f"port {name!r} declared twice")
        if decoder not in PROTOCOLS:
            known = ", ".join(sorted(PROTOCOLS))
            raise CaptureError(lineno, f"unknown decoder {decoder!r} (known: {known})")
        self.ports[name] = decoder

    def __iter__(self) -> Iterator[CaptureRecord]:
        last_t = 0.0
        ports = self.ports
        pending = [self._first_data] if self._first_data is not None else []
        for lineno, line in itertools.chain(pending, self._lines):
            if line.startswith("#") or not line.strip():
                continue
            parts = line.split()
            if len(parts) != 4:  # noqa: PLR2004  (SECONDS PORT DIRECTION HEX)
                raise CaptureError(lineno, "expected 'SECONDS PORT DIRECTION HEX'")
            raw_t, port, direction, raw_hex = parts
            try:
                t = parse_seconds(raw_t)
            except ValueError as exc:
                raise CaptureError(lineno, f"bad time: {exc}") from None
            if t < last_t:
                raise CaptureError(lineno, f"time {raw_t} goes back (after {last_t:g})")
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


def _numbered(stream: Iterable[str]) -> Iterator[tuple[int, str]]:
    for lineno, line in enumerate(stream, 1):
        # Bytes that are not UTF-8 arrive as lone surrogates (see `open_capture`).
        if not line.isascii():
            try:
                line.encode()
            except UnicodeEncodeError:
                raise CaptureError(lineno, "not UTF-8 text") from None
        yield lineno, line


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
