"""Time-coded capture files (DESIGN §6): every byte of every port, replayable.

    # sessiond-capture 1
    # port spo2 masimo-ascii1
    0.000 spo2 < 30322f...

Data lines are `SECONDS PORT DIRECTION HEX`: seconds since capture start (finite,
non-decreasing), `<` from the device, `>` to it, the bytes as they arrived. Anything else is
a `CaptureError` naming its line.

The reader works in blocks of about a megabyte, not line by line: numpy finds the lines and
their fields, checks them and parses the times, and the hex of a whole block is decoded in
one call (`CaptureBlock`). Lines written the way `CaptureWriter` writes them (one space
between fields, plain decimal seconds) take that path; anything else in a block (tabs, other
spacing, exponents, non-ASCII text, an error) is read from that line on by the line-by-line
rules, which are the reference: both give the same records, and an error names the same line
with the same words. numpy is imported when the first data line is read: the daemon, which
only writes captures, and a replay of a capture without data never load it.
"""

# ruff: noqa: PLC0415 - numpy is imported where data lines are read (see the docstring)

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from sessiond.devices import PROTOCOLS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
    from pathlib import Path

    import numpy as np
    import numpy.typing as npt

MAGIC = "# sessiond-capture 1"
FROM_DEVICE = "<"
TO_DEVICE = ">"
#: Capture times and replay's `--dose-at`/`--end-at` stay within a year: far beyond any
#: capture, and replay schedules every deadline up to the time it is given.
MAX_SECONDS = 366 * 24 * 3600.0
#: Bytes read at a time; a block is the whole lines in it (about 30 000 lines of a 60 Hz port).
BLOCK_BYTES = 1 << 20

_NL, _SPACE, _HASH, _DOT, _ZERO = 10, 32, 35, 46, 48
_LT, _GT = ord(FROM_DEVICE), ord(TO_DEVICE)
#: A block of at least this many equal lines is read by columns.
_UNIFORM_MIN_LINES = 16
#: Seconds with at most this many digits are parsed exactly as N / 10**k (N < 2**53).
_MAX_TIME_DIGITS = 15
_MAX_TIME_WIDTH = _MAX_TIME_DIGITS + 1


@functools.cache
def _pow10() -> npt.NDArray[np.float64]:
    """10**k for k = 0 .. `_MAX_TIME_DIGITS` as doubles (exact: every power up to 1e15 is one)."""
    import numpy as np

    return (10 ** np.arange(_MAX_TIME_DIGITS + 1, dtype=np.int64)).astype(np.float64)


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


@dataclass(frozen=True, slots=True)
class PortPieces:
    """The bytes one port's device sent in a block: `data[ends[i-1]:ends[i]]` arrived on the
    block's data line `lines[i]`, at `CaptureBlock.times[lines[i]]`."""

    data: bytes
    ends: npt.NDArray[np.int64]
    lines: npt.NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class CaptureBlock:
    """Consecutive data lines of a capture, column by column.

    Per data line (comments and blank lines are not in it): `times`, `ports` (an index into
    `names`) and `incoming` (direction `<`). `pieces` holds, per port, the bytes from the
    device; `sent` the data-line indices of the bytes sent to it (`>`), and their bytes.
    """

    names: tuple[str, ...]
    times: npt.NDArray[np.float64]
    ports: npt.NDArray[np.intp]
    incoming: npt.NDArray[np.bool_]
    pieces: dict[str, PortPieces]
    sent: dict[str, list[tuple[int, bytes]]]

    def __len__(self) -> int:
        return len(self.times)

    def records(self) -> Iterator[CaptureRecord]:
        """The block's lines one by one, in file order."""
        data: dict[int, bytes] = {}
        for p in self.pieces.values():
            starts = [0, *p.ends[:-1].tolist()]
            for line, a, b in zip(p.lines.tolist(), starts, p.ends.tolist(), strict=True):
                data[line] = p.data[a:b]
        for lines in self.sent.values():
            data.update(lines)
        names = self.names
        for i, (t, port, incoming) in enumerate(
            zip(self.times.tolist(), self.ports.tolist(), self.incoming.tolist(), strict=True)
        ):
            yield CaptureRecord(t, names[port], FROM_DEVICE if incoming else TO_DEVICE, data[i])


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


def open_capture(path: Path) -> BinaryIO:
    """`path` for `CaptureReader`, which reads its bytes and names the line of any that are
    not UTF-8."""
    return path.open("rb")


class CaptureReader:
    """Reads a capture: `ports` from the header, then data lines by `blocks()` (or one by one
    by iterating). Takes a binary or text file, or any iterable of text lines."""

    def __init__(self, stream: BinaryIO | Iterable[str]) -> None:
        self._chunks = _byte_chunks(stream)
        self._raw = b""  # bytes read and not yet cut into lines
        self._eof = False
        self._text = b""  # whole lines (LF-terminated) not yet parsed
        self._lineno = 0  # lines before `_text`
        self.ports: dict[str, str] = {}
        self._last_t = 0.0
        self._done = False
        self._read_header()
        self._names = tuple(self.ports)
        self._name_bytes = tuple(name.encode() for name in self._names)
        self._index = {name: i for i, name in enumerate(self._names)}

    # --- header ---------------------------------------------------------------------------

    def _read_header(self) -> None:
        lineno = 0
        magic = False
        while True:
            if not self._text:
                text = self._take_lines()
                if text is None:
                    break
                self._text = text
            text, at = self._text, 0
            while at < len(text):
                end = text.index(b"\n", at)
                lineno += 1
                raw = text[at:end]
                try:
                    line = raw.decode()
                except UnicodeDecodeError:
                    raise CaptureError(lineno, "not UTF-8 text") from None
                if not magic:
                    if line != MAGIC:
                        raise CaptureError(1, f"expected {MAGIC!r} as the first line")
                    magic = True
                elif line.strip() and not line.startswith("#"):
                    self._text, self._lineno = text[at:], lineno - 1
                    return self._check_ports(lineno)
                else:
                    words = line[1:].split()
                    if words[:1] == ["port"]:
                        self._declare(lineno, words[1:])
                    # Other comment lines are notes; readers ignore them.
                at = end + 1
            self._text, self._lineno = b"", lineno
        if not magic:
            raise CaptureError(1, f"expected {MAGIC!r} as the first line")
        return self._check_ports(max(lineno, 1))

    def _check_ports(self, lineno: int) -> None:
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

    # --- reading --------------------------------------------------------------------------

    def _take_lines(self) -> bytes | None:
        """The next run of whole lines, each ending in LF (a CR LF or a lone CR, which a text
        stream also reads as a line end, becomes LF); None at the end of the file."""
        while True:
            while not self._eof and len(self._raw) < BLOCK_BYTES:
                chunk = next(self._chunks, None)
                if chunk is None:
                    self._eof = True
                else:
                    self._raw += chunk
            raw = self._raw
            if self._eof:
                self._raw = b""
                if not raw:
                    return None
                cut = len(raw)
            else:
                cut = raw.rfind(b"\n") + 1
                if not cut:
                    # No LF: lines may end in lone CRs (but the last CR may have its LF next).
                    cut = raw.rfind(b"\r", 0, len(raw) - 1) + 1
                if not cut:
                    self._raw += next(self._chunks, b"")  # a line longer than a block
                    self._eof = self._eof or len(self._raw) == len(raw)
                    continue
                self._raw = raw[cut:]
            text = raw[:cut]
            if b"\r" in text:
                text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            return text if text.endswith(b"\n") else text + b"\n"

    # --- data -----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[CaptureRecord]:
        for block in self.blocks():
            yield from block.records()

    def blocks(self, *, until: float | None = None) -> Iterator[CaptureBlock]:
        """The data lines in blocks, up to (not including) the first line after `until`
        seconds, which is still checked: what follows it is never read."""
        while not self._done:
            text = self._text or self._take_lines()
            self._text = b""
            if text is None:
                return
            first_line = self._lineno + 1
            self._lineno += text.count(b"\n")
            yield from self._parse(text, first_line, until)

    def _parse(self, text: bytes, first_line: int, until: float | None) -> Iterator[CaptureBlock]:
        """The data of whole lines `text` (the first is line `first_line`); raises
        `CaptureError` at the first bad line, after yielding the lines before it."""
        fast: _Fast | None = None
        if text.isascii():
            fast = _Fast(text, self._name_bytes, self._last_t)
        if fast is None or not fast.stop:
            # The line rules from the first line (comments and blank lines are skipped).
            yield from self._slow(text, first_line, until, 0)
            return
        stop, cut = fast.stop, False
        if until is not None:
            import numpy as np

            over = np.flatnonzero(fast.times[:stop] > until)
            if over.size:
                stop, cut = int(over[0]), True
        block = fast.block(stop, check_next=cut)
        if block is None:  # a hex field that fromhex refuses: the line rules say which
            yield from self._slow(text, first_line, until, 0)
            return
        if len(block):
            self._last_t = float(block.times[-1])
            yield block
        if cut:
            self._done = True
        elif stop < len(fast.lines):
            # From the first line the fast path does not take, the line rules decide.
            offset = int(fast.starts[fast.lines[stop]])
            yield from self._slow(text, first_line, until, offset)

    def _slow(
        self, text: bytes, first_line: int, until: float | None, offset: int
    ) -> Iterator[CaptureBlock]:
        """Whole lines `text[offset:]` (line `first_line` is at `text[0]`), one by one."""
        lineno = first_line + text.count(b"\n", 0, offset)
        times: list[float] = []
        ports: list[int] = []
        incoming: list[bool] = []
        data: list[bytes] = []
        error: CaptureError | None = None
        for raw in text[offset:].split(b"\n")[:-1]:
            try:
                record = self._line(lineno, raw)
            except CaptureError as exc:
                error = exc
                break
            lineno += 1
            if record is None:
                continue
            t, port, direction, chunk = record
            if until is not None and t > until:
                self._done = True
                break
            self._last_t = t
            times.append(t)
            ports.append(self._index[port])
            incoming.append(direction == FROM_DEVICE)
            data.append(chunk)
        if times:
            yield _block_from_lists(self._names, times, ports, incoming, data)
        if error is not None:
            self._done = True
            raise error

    def _line(self, lineno: int, raw: bytes) -> tuple[float, str, str, bytes] | None:
        """One data line by the reference rules; None for a comment or a blank line."""
        if not raw.isascii():
            # Bytes that are not UTF-8 (or a lone surrogate of a text stream) name their line.
            try:
                line = raw.decode()
            except UnicodeDecodeError:
                raise CaptureError(lineno, "not UTF-8 text") from None
        else:
            line = raw.decode("ascii")
        if line.startswith("#") or not line.strip():
            return None
        parts = line.split()
        if len(parts) != 4:  # noqa: PLR2004  (SECONDS PORT DIRECTION HEX)
            raise CaptureError(lineno, "expected 'SECONDS PORT DIRECTION HEX'")
        raw_t, port, direction, raw_hex = parts
        try:
            t = parse_seconds(raw_t)
        except ValueError as exc:
            raise CaptureError(lineno, f"bad time: {exc}") from None
        if t < self._last_t:
            raise CaptureError(lineno, f"time {raw_t} goes back (after {self._last_t:g})")
        if port not in self.ports:
            raise CaptureError(lineno, f"undeclared port {port!r}")
        if direction not in (FROM_DEVICE, TO_DEVICE):
            raise CaptureError(lineno, f"direction must be '<' or '>', not {direction!r}")
        try:
            data = bytes.fromhex(raw_hex)
        except ValueError:
            raise CaptureError(lineno, f"bad hex {raw_hex[:20]!r}") from None
        return t, port, direction, data


class _Fast:
    """The data lines of a block in the form `CaptureWriter` writes, parsed with numpy.

    `lines` are the indices of the block's data lines (not comments or blank lines) and
    `starts` where each line of the block starts; the first `stop` data lines are in the plain
    form (one space between fields, plain decimal seconds, a declared port, `<` or `>`, an even
    number of hex digits) with their times in order: those the fast path takes.

    When every line of the block has the same length and layout (fixed-size chunks, as a link
    or the simulator writes them), the block is read as a (lines, length) array by columns;
    otherwise the fields are found line by line with numpy.
    """

    def __init__(self, text: bytes, names: Sequence[bytes], last_t: float) -> None:
        import numpy as np

        self.a = np.frombuffer(text, dtype=np.uint8)
        self._names = names
        self.stop = 0
        self.lines: npt.NDArray[np.intp] = np.empty(0, dtype=np.intp)
        self.starts: npt.NDArray[np.intp] = self.lines
        self.times: npt.NDArray[np.float64] = np.empty(0)
        self._ports: npt.NDArray[np.intp] = self.lines
        self._incoming: npt.NDArray[np.bool_] = np.empty(0, dtype=np.bool_)
        self._sizes: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)
        #: The hex digits of the first m data lines, concatenated.
        self._hex: Callable[[int], bytes] = lambda m: b""  # noqa: ARG005
        if not self._uniform(text, last_t):
            self._generic(last_t)

    def _uniform(self, text: bytes, last_t: float) -> bool:
        """Read a block of equal lines by columns; False when it is not one (or has a line
        the fast path does not take: the generic reading finds which)."""
        import numpy as np

        a, size = self.a, text.find(b"\n") + 1
        n = len(text) // size if size else 0
        if n < _UNIFORM_MIN_LINES or n * size != len(text):
            return False
        rows = a.reshape(n, size)
        head = text[: size - 1]
        p1 = head.find(b" ")
        p2 = head.find(b" ", p1 + 1)
        p3 = head.find(b" ", p2 + 1)
        if min(p1, p2, p3) < 1 or head.count(b" ") != 3 or p3 != p2 + 2:  # noqa: PLR2004
            return False
        port = _port_index(head[p1 + 1 : p2], self._names)
        if port < 0 or not (rows[:, size - 1] == _NL).all():
            return False
        ok = (rows[:, p1] == _SPACE) & (rows[:, p2] == _SPACE) & (rows[:, p3] == _SPACE)
        for k, byte in enumerate(self._names[port]):
            ok &= rows[:, p1 + 1 + k] == byte
        direction = rows[:, p2 + 1]
        ok &= (direction == _LT) | (direction == _GT)
        times = _column_seconds(rows, head[:p1], ok)
        if times is None or not ok.all():
            return False
        hex_len = size - 1 - (p3 + 1)
        if hex_len < 2 or hex_len % 2 or not _in_order(times, last_t).all():  # noqa: PLR2004
            return False
        self.lines = np.arange(n, dtype=np.intp)
        self.starts = self.lines * size
        self.times = times
        self.stop = n
        self._ports = np.full(n, port, dtype=np.intp)
        self._incoming = direction == _LT
        self._sizes = np.full(n, hex_len // 2, dtype=np.int64)
        self._hex = lambda m: rows[:m, p3 + 1 : size - 1].tobytes()
        return True

    def _generic(self, last_t: float) -> None:
        import numpy as np

        a = self.a
        nl = np.flatnonzero(a == _NL)
        starts = np.empty_like(nl)
        starts[0] = 0
        starts[1:] = nl[:-1] + 1
        self.starts = starts
        data = nl > starts
        data[data] = a[starts[data]] != _HASH
        self.lines = lines = np.flatnonzero(data)
        spaces = np.flatnonzero(a == _SPACE)
        if not lines.size or len(spaces) < 3:  # noqa: PLR2004
            return
        s, e = starts[lines], nl[lines]
        k0 = np.searchsorted(spaces, s)
        ok = np.searchsorted(spaces, e) - k0 == 3  # noqa: PLR2004  (three separators)
        k0 = np.minimum(k0, len(spaces) - 3)
        p1, p2, p3 = spaces[k0], spaces[k0 + 1], spaces[k0 + 2]
        times = _seconds(a, s, p1 - s, ok)
        port = np.full(len(lines), -1, dtype=np.intp)
        width = p2 - p1 - 1
        last = len(a) - 1
        for i, name in enumerate(self._names):
            match = width == len(name)
            for k, byte in enumerate(name):
                match &= a[np.minimum(p1 + 1 + k, last)] == byte
            port[match & (port < 0)] = i
        ok &= port >= 0
        direction = a[np.minimum(p2 + 1, last)]
        ok &= (p3 == p2 + 2) & ((direction == _LT) | (direction == _GT))
        hex_len = e - p3 - 1
        ok &= (hex_len >= 2) & (hex_len % 2 == 0)  # noqa: PLR2004
        ok &= _in_order(times, last_t)
        bad = np.flatnonzero(~ok)
        # Only the lines before the first one the fast path does not take: a later line's
        # time is compared with a time the line rules have not accepted yet.
        self.stop = int(bad[0]) if bad.size else len(lines)
        self.times = times
        self._ports = port
        self._incoming = direction == _LT
        self._sizes = hex_len // 2
        self._hex = lambda m: _gather(a, p3[:m] + 1, e[:m]).tobytes()

    def block(self, stop: int, *, check_next: bool) -> CaptureBlock | None:
        """The first `stop` data lines; with `check_next`, line `stop` is checked too (the
        first line after `--end-at`). None when a hex field is not hex."""
        import numpy as np

        n = stop + 1 if check_next else stop
        digits = self._hex(n)
        try:
            raw = bytes.fromhex(digits.decode("ascii"))
        except ValueError:
            return None
        if 2 * len(raw) != len(digits):  # fromhex skipped whitespace: not a plain line
            return None
        ends = np.cumsum(self._sizes[:stop], dtype=np.int64)
        ports, incoming = self._ports[:stop], self._incoming[:stop]
        names = tuple(name.decode() for name in self._names)
        pieces: dict[str, PortPieces] = {}
        sent: dict[str, list[tuple[int, bytes]]] = {}
        whole = raw[: int(ends[-1])] if stop else b""
        for i, name in enumerate(names if stop else ()):
            mine = ports == i
            into = mine & incoming
            if into.all():
                pieces[name] = PortPieces(whole, ends, np.arange(stop, dtype=np.intp))
            elif into.any():
                pieces[name] = _pieces_of(whole, ends, np.flatnonzero(into))
            out = np.flatnonzero(mine & ~incoming)
            if out.size:
                starts = np.concatenate(([0], ends[:-1]))
                sent[name] = [(k, whole[starts[k] : ends[k]]) for k in out.tolist()]
        return CaptureBlock(
            names=names,
            times=self.times[:stop],
            ports=ports,
            incoming=incoming,
            pieces=pieces,
            sent=sent,
        )


def _port_index(name: bytes, names: Sequence[bytes]) -> int:
    try:
        return names.index(name)
    except ValueError:
        return -1


def _in_order(times: npt.NDArray[np.float64], last_t: float) -> npt.NDArray[np.bool_]:
    """Per time: not after `MAX_SECONDS`, and not before the one before it."""
    ok: npt.NDArray[np.bool_] = times <= MAX_SECONDS
    ok[0] &= times[0] >= last_t
    ok[1:] &= times[1:] >= times[:-1]
    return ok


def _column_seconds(
    rows: npt.NDArray[np.uint8], head: bytes, ok: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64] | None:
    """The seconds in the first `len(head)` columns of `rows`, laid out as in `head` (digits
    with the dot, if any, in the same column); None when `head` is not a plain decimal."""
    import numpy as np

    dot = head.find(b".")
    digits = len(head) - (dot >= 0)
    if not 1 <= digits <= _MAX_TIME_DIGITS or head.count(b".") > 1:
        return None
    n = np.zeros(len(rows), dtype=np.int64)
    for c in range(len(head)):
        col = rows[:, c]
        if c == dot:
            ok &= col == _DOT
            continue
        d = col - np.uint8(_ZERO)
        ok &= d < 10  # noqa: PLR2004
        n *= 10
        n += d
    frac = len(head) - dot - 1 if dot >= 0 else 0
    times: npt.NDArray[np.float64] = n / _pow10()[frac]
    return times


def _seconds(
    a: npt.NDArray[np.uint8],
    s: npt.NDArray[np.intp],
    width: npt.NDArray[np.intp],
    ok: npt.NDArray[np.bool_],
) -> npt.NDArray[np.float64]:
    """The plain decimal numbers at `a[s : s + width]`; clears `ok` where there is none.

    N / 10**k with N < 2**53 and k <= 15 is the correctly rounded value of the decimal, as
    `float(text)` gives it: both operands are exact doubles and IEEE division rounds once.
    """
    import numpy as np

    ok &= (width >= 1) & (width <= _MAX_TIME_WIDTH)
    w = np.where(ok, width, 0)
    last = len(a) - 1
    n = np.zeros(len(s), dtype=np.int64)
    dots = np.zeros(len(s), dtype=np.int64)
    digits = np.zeros(len(s), dtype=np.int64)
    frac = np.zeros(len(s), dtype=np.int64)
    for j in range(int(w.max(initial=0))):
        inside = j < w
        c = a[np.minimum(s + j, last)]
        d = c - np.uint8(_ZERO)
        is_digit = (d < 10) & inside  # noqa: PLR2004
        is_dot = (c == _DOT) & inside
        ok &= is_digit | is_dot | ~inside
        n = np.where(is_digit, n * 10 + d, n)
        frac += is_digit & (dots > 0)
        dots += is_dot
        digits += is_digit
    ok &= (dots <= 1) & (digits >= 1) & (digits <= _MAX_TIME_DIGITS)
    times: npt.NDArray[np.float64] = n / _pow10()[np.minimum(frac, _MAX_TIME_DIGITS)]
    return times


def _gather(
    a: npt.NDArray[np.uint8], starts: npt.NDArray[np.intp], ends: npt.NDArray[np.intp]
) -> npt.NDArray[np.uint8]:
    """`a[starts[i]:ends[i]]` for every i, concatenated."""
    import numpy as np

    if not len(starts):
        return a[:0]
    step = np.zeros(len(a) + 1, dtype=np.int8)
    step[starts] += 1
    step[ends] -= 1
    mask = np.cumsum(step[:-1], dtype=np.int8).view(np.bool_)
    out: npt.NDArray[np.uint8] = a[mask]
    return out


def _pieces_of(data: bytes, ends: npt.NDArray[np.int64], lines: npt.NDArray[np.intp]) -> PortPieces:
    """The pieces of `data` (cut at `ends`) on `lines`, concatenated."""
    import numpy as np

    starts = np.concatenate(([0], ends[:-1]))
    arr = np.frombuffer(data, dtype=np.uint8)
    chosen = _gather(arr, starts[lines], ends[lines])
    return PortPieces(chosen.tobytes(), np.cumsum(ends[lines] - starts[lines]), lines)


def _block_from_lists(
    names: tuple[str, ...],
    times: list[float],
    ports: list[int],
    incoming: list[bool],
    data: list[bytes],
) -> CaptureBlock:
    import numpy as np

    pieces: dict[str, PortPieces] = {}
    sent: dict[str, list[tuple[int, bytes]]] = {}
    for i, name in enumerate(names):
        lines = [k for k, (p, into) in enumerate(zip(ports, incoming, strict=True))
                 if p == i and into]  # fmt: skip
        if lines:
            chunks = [data[k] for k in lines]
            ends = np.cumsum([len(c) for c in chunks], dtype=np.int64)
            pieces[name] = PortPieces(b"".join(chunks), ends, np.array(lines, dtype=np.intp))
        out = [(k, data[k]) for k, (p, into) in enumerate(zip(ports, incoming, strict=True))
               if p == i and not into]  # fmt: skip
        if out:
            sent[name] = out
    return CaptureBlock(
        names=names,
        times=np.array(times, dtype=np.float64),
        ports=np.array(ports, dtype=np.intp),
        incoming=np.array(incoming, dtype=np.bool_),
        pieces=pieces,
        sent=sent,
    )


def _byte_chunks(stream: BinaryIO | Iterable[str]) -> Iterator[bytes]:
    """The capture's bytes in large pieces, from a binary or text stream or text lines."""
    read = getattr(stream, "read", None)
    if read is not None:
        while chunk := read(BLOCK_BYTES):
            # A text stream's lone surrogates (bytes it could not decode) stay invalid UTF-8.
            yield chunk if isinstance(chunk, bytes) else chunk.encode("utf-8", "surrogatepass")
        return
    batch: list[str] = []
    size = 0
    for line in stream:
        assert isinstance(line, str)
        batch.append(line)
        size += len(line)
        if size >= BLOCK_BYTES:
            yield "".join(batch).encode("utf-8", "surrogatepass")
            batch, size = [], 0
    if batch:
        yield "".join(batch).encode("utf-8", "surrogatepass")


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
