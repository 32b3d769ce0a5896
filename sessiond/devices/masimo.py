"""Masimo "ASCII 1" serial output (Radical-7, Rad-8, Rad-87, Root): one text line a second.

`MM/DD/YY HH:MM:SS` then space-separated `KEY=value` tokens, CR LF. Token sets differ by
model and firmware, so fields are found by key, never by a fixed column (reference/devices.md
§2). Missing values are dashes; the EXC hex word carries the quality bits.

One pass per line, whatever the chunk: a line whose shape (its digits masked) was seen
before is read at the places its keys were found in the first line of that shape; the
first line of a shape, and any line the layout cannot vouch for, goes through the full
rules (`_line`).

A read of many whole lines of one shape (a capture block, a 4 KiB read of a fast port) is
read as one matrix of bytes with numpy (`_Block`): one check that every line has the shape,
one product for all its numbers. Where it cannot vouch for every line, the lines go one by
one as above. A live link's read holds a line or so and never loads numpy.
"""

# ruff: noqa: PLC0415 - numpy is imported where a bulk path needs it: a live link never loads it

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar, NamedTuple

from sessiond.devices.decoder import SerialSettings, Timed
from sessiond.devices.lines import LineDecoder
from sessiond.model import PROBE_OFF, Quality, Reading, ReadingColumns, ReadingParts

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy as np
    import numpy.typing as npt

#: A line longer than this without a terminator is noise: the longest rainbow line is ~200.
MAX_LINE = 512

_STAMP = re.compile(rb"\d\d/\d\d/\d\d \d\d:\d\d:\d\d ")

# EXC bit → quality flag (devices.md §2.3). Bits not listed carry no quality meaning here.
_EXC_FLAGS: tuple[tuple[int, Quality], ...] = (
    (0x000001, Quality.NO_SENSOR),  # no sensor
    (0x000002, Quality.NO_SENSOR),  # defective sensor
    (0x000004, Quality.LOW_PERFUSION),
    (0x000008, Quality.SEARCHING),  # pulse search
    (0x000010, Quality.ARTIFACT),  # interference
    (0x000020, Quality.SENSOR_OFF),
    (0x000040, Quality.ARTIFACT),  # ambient light
    (0x000080, Quality.NO_SENSOR),  # unrecognised sensor
    (0x000100, Quality.NO_SENSOR),  # incompatible sensor
    (0x000400, Quality.LOW_SIGNAL),  # low signal IQ
    (0x001000, Quality.NO_SENSOR),  # no cable connected
    (0x004000, Quality.NO_SENSOR),  # incompatible cable
    (0x008000, Quality.NO_SENSOR),  # unrecognised cable
    (0x010000, Quality.NO_SENSOR),  # defective cable
    (0x020000, Quality.SEARCHING),  # sensor calibrating
)

_MAX_SPO2 = 100
_MAX_PR = 300  # Masimo displays 25-240 bpm; beyond 300 is a corrupted field
_MAX_PI = 100.0
_FLAG_CACHE_SIZE = 256
_PROBE_OFF = int(PROBE_OFF)  # plain int: IntFlag operators are ~6x slower on the hot path


#: A line's shape: its digits masked. Lines of one shape have their values in the same places
#: and of the same kind (digits, dashes), so a layout learnt from one line reads the others.
#: A `#` sent as such is told apart from a digit (lines reach here without NUL bytes).
_SHAPE = bytes.maketrans(b"0123456789#", b"##########\x00")
#: Shapes remembered (a device has a handful; noise must not grow the table without bound).
_MAX_LAYOUTS = 64
#: Blocks remembered, by shape and EXC word.
_MAX_BLOCKS = 4 * _MAX_LAYOUTS
_MAX_MINUTES = 1024
_SECONDS = {b"%02d" % s: timedelta(seconds=s) for s in range(60)}
_LF, _CR = ord("\n"), ord("\r")
#: The same by the number two digits make (None past 59: no time).
_SECOND_BY_NUMBER: list[timedelta | None] = [*_SECONDS.values(), *[None] * 40]
#: A read this long may hold blocks (two seconds of a 9600-baud link: a live link's read
#: holds a line or so, and never loads numpy); a block is this many whole lines or more.
_BLOCK_BYTES = 2048
_BLOCK_LINES = 4
#: Lines tried as one block: from the first, doubled while whole runs come, up to the last.
_MIN_WINDOW, _MAX_WINDOW = 32, 4096
#: Lines read one by one where no block starts, before one is tried again.
_LINES_BETWEEN = 16


class _BadField(ValueError):
    """A field that is present but cannot be a real value."""


def _exc_flags(exc: int) -> Quality:
    flags = Quality.NONE
    for bit, flag in _EXC_FLAGS:
        if exc & bit:
            flags |= flag
    return flags


def _int_field(raw: bytes | None, maximum: int) -> int | None:
    if raw is None or b"--" in raw:
        return None
    value = int(raw.rstrip(b"%"))
    if not 0 <= value <= maximum:
        raise _BadField(raw)
    return value


def _pi_field(raw: bytes | None) -> float | None:
    if raw is None or b"--" in raw:
        return None
    value = float(raw.rstrip(b"%"))
    if not 0.0 <= value <= _MAX_PI:
        raise _BadField(raw)
    return value


class MasimoAscii1Decoder(LineDecoder):
    """Decoder for `masimo-ascii1`; tolerant of NUL bytes, partial first lines and noise."""

    protocol: ClassVar[str] = "masimo-ascii1"
    serial: ClassVar[SerialSettings] = SerialSettings(baudrate=9600)
    streaming: ClassVar[bool] = True
    # One line a second; OpenICE's quiet-time watchdog is 1.1 s, 2.5x leaves room for jitter.
    silence_timeout_s: ClassVar[float] = 2.5

    max_line: ClassVar[int] = MAX_LINE

    def __init__(self, *, device: str) -> None:
        super().__init__(device=device)
        self._flag_cache: dict[int, Quality] = {}
        self._layouts: dict[bytes, _Layout] = {}
        #: The block of each shape whose layout can read lines as a matrix (None: it cannot).
        self._blocks: dict[bytes, _Block | None] = {}
        #: How many lines the next block is tried on.
        self._window = _MIN_WINDOW
        #: Flags, and whether they withhold the numbers, by EXC field.
        self._excs: dict[bytes, tuple[Quality, bool]] = {}
        #: The device clock's minutes (`MM/DD/YY HH:MM:`), None where it is no time.
        self._minutes: dict[bytes, datetime | None] = {}

    def feed(self, data: bytes, t: float) -> list[Reading]:
        if len(self._pending) + len(data) < _BLOCK_BYTES:
            return super().feed(data, t)
        import numpy as np

        return list(self._bulk(data, np.array([len(data)]), np.array([t])).readings)

    def feed_timed(
        self, data: bytes, ends: npt.NDArray[np.int64], times: npt.NDArray[np.float64]
    ) -> Timed:
        if len(self._pending) + len(data) < _BLOCK_BYTES:
            return super().feed_timed(data, ends, times)
        return self._bulk(data, ends, times)

    def _bulk(
        self, data: bytes, ends: npt.NDArray[np.int64], times: npt.NDArray[np.float64]
    ) -> Timed:
        """`feed_timed` for a read of many lines: runs of whole lines of one shape as blocks
        (their readings in columns), the lines between them one by one (`_lines`), each line
        at the time of the piece its end (CR, or LF alone) came in. From noise longer than a
        line on, piece by piece (where it is skipped depends on where the pieces end)."""
        import numpy as np

        off = len(self._pending)
        buf = self._pending + data if self._pending else data
        self._pending = b""
        body = max(buf.rfind(b"\n"), buf.rfind(b"\r")) + 1
        parts: list[Sequence[Reading]] = []
        pieces: list[int] = []
        pos = 0
        while pos < body:
            run = self._run(buf, pos, body)
            if run is not None:
                size, columns = run
                count = len(columns.spo2)
                if len(ends) == 1:
                    where = [0] * count
                    at = [float(times[0])] * count
                else:
                    crs = np.arange(pos + size - 2 - off, pos + count * size - off, size)
                    found = np.searchsorted(ends, crs, side="right")
                    where, at = found.tolist(), times[found].tolist()
                parts.append(self._readings(columns, at))
                pieces += where
                pos += count * size
                continue
            # The next lines one by one (then a block is tried again), unless noise comes.
            lines = self._one_by_one(buf, pos, body, off, ends, times)
            if lines is None:
                break
            pos, read, where = lines
            parts.append(read)
            pieces += where
        if pos < body or len(buf) - body > MAX_LINE:
            # Noise from `pos` on: the rest of its piece and the pieces after it, as fed.
            first = int(np.searchsorted(ends, pos - off, side="right"))
            start, rest = pos, []
            for k in range(first, len(ends)):
                got = super().feed(buf[start : off + int(ends[k])], float(times[k]))
                rest += got
                pieces += [k] * len(got)
                start = off + int(ends[k])
            parts.append(rest)
        else:
            self._pending = bytes(buf[body:])
        frames = np.fromiter(dict.fromkeys(pieces), dtype=np.intp)  # ascending already
        return Timed(ReadingParts(parts), pieces, frames)

    def _one_by_one(  # noqa: PLR0917 - `_bulk`'s state
        self,
        buf: bytes,
        pos: int,
        body: int,
        off: int,
        ends: npt.NDArray[np.int64],
        times: npt.NDArray[np.float64],
    ) -> tuple[int, list[Reading], list[int]] | None:
        """The next `_LINES_BETWEEN` lines from `pos` through `_lines`: where they end, their
        readings and the pieces of those; None where noise longer than a line comes first."""
        import numpy as np

        reach = min(body - pos, _LINES_BETWEEN * (MAX_LINE + 1))
        near = np.frombuffer(buf, dtype=np.uint8, offset=pos, count=reach)
        line_ends = np.flatnonzero((near == _LF) | (near == _CR))[:_LINES_BETWEEN] + pos
        if (
            not line_ends.size
            or line_ends[0] - pos > MAX_LINE
            or (line_ends[1:] - line_ends[:-1]).max(initial=0) > MAX_LINE + 1
        ):
            return None
        stop = int(line_ends[-1]) + 1
        lines = buf[pos:stop].replace(b"\x00", b"").replace(b"\r", b"\n").split(b"\n")
        keep = [i for i, line in enumerate(lines[:-1]) if line]
        if not keep:
            return stop, [], []
        found = np.searchsorted(ends, line_ends[keep] - off, side="right")
        read = self._lines([lines[i] for i in keep], times[found].tolist())
        made = [(r, p) for r, p in zip(read, found.tolist(), strict=True) if r]
        return stop, [r for r, _ in made], [p for _, p in made]

    def _run(self, buf: bytes, pos: int, body: int) -> tuple[int, _Columns] | None:
        """The lines from `pos` (before `body`) that read as one block of a known shape: their
        size and values; None unless there are `_BLOCK_LINES` or more."""
        size = buf.find(b"\n", pos, body) + 1 - pos
        rows = min((body - pos) // size, self._window) if size > 2 else 0  # noqa: PLR2004
        # One CR LF at its end and no NUL: else the line is not what `_lines` would read.
        if (
            rows < _BLOCK_LINES
            or buf.find(b"\r", pos, body) != pos + size - 2
            or buf.find(b"\x00", pos, pos + size) >= 0
        ):
            return None
        shape = buf[pos : pos + size - 2].translate(_SHAPE)
        layout = self._layouts.get(shape)
        if layout is None:
            return None  # `_lines` learns the shape from its first line
        # A block is of one shape and one EXC word (the same flags for all its lines).
        exc = layout.exc
        key = shape if exc is None else shape + buf[pos + exc.start : pos + exc.stop]
        block = self._blocks.get(key, _UNTAUGHT)
        if block is _UNTAUGHT:
            if len(self._blocks) >= _MAX_BLOCKS:
                self._blocks.clear()  # noise filled it
            block = self._blocks[key] = _Block.of(layout, buf[pos : pos + size])
        if block is None:
            return None
        numbers = block.numbers(buf, pos, rows)
        count = len(numbers[0])
        # A run cut short is tried small again next time; a whole one, larger.
        self._window = _MIN_WINDOW if count < rows else min(2 * rows, _MAX_WINDOW)
        if count < _BLOCK_LINES:
            return None
        return size, self._columns(block, numbers, buf, pos)

    def _columns(self, block: _Block, numbers: list[list[int]], buf: bytes, pos: int) -> _Columns:
        """The values of a run of lines read as a block from `pos`, as `_lines` gives them."""
        spo2s, prs, pis, seconds = numbers
        has_spo2, has_pr, has_pi = block.fields
        count = len(spo2s)
        if block.exc is None:
            flags, withheld = Quality.NONE, False
        else:
            raw = buf[pos + block.exc.start : pos + block.exc.stop]
            known = self._excs.get(raw)
            flags, withheld = self._exc(raw) if known is None else known
        minute_at, size = block.minute, block.size

        def device_time(start: int, stop: int) -> list[datetime | None]:
            """The device clock of lines `start` to `stop` (metadata: worked out when asked)."""
            out: list[datetime | None] = []
            last, minute = b"", None
            for i in range(start, stop):
                at = pos + i * size
                raw = buf[at + minute_at.start : at + minute_at.stop]
                if raw != last:
                    last, minute = raw, self._minutes.get(raw, _UNSEEN)
                    if minute is _UNSEEN:
                        minute = self._minute(raw)
                step = _SECOND_BY_NUMBER[seconds[i]]
                out.append(None if minute is None or step is None else minute + step)
            return out

        self.records += count
        nothing = [None] * count
        return _Columns(
            spo2=nothing if withheld or not has_spo2 else spo2s,
            pr=nothing if withheld or not has_pr else prs,
            pi=nothing if withheld or not has_pi else [p / block.pi_scale for p in pis],
            device_time=device_time,
            flags=flags,
        )

    def _readings(self, columns: _Columns, times: list[float]) -> ReadingColumns:
        spo2, pr, pi, device_time, flags = columns
        return ReadingColumns(device=self.device, t=times, spo2=spo2, pr=pr, pi=pi,
                              flags=flags, device_time=device_time)  # fmt: skip

    def _line(self, line: bytes, t: float) -> Reading | None:
        stamp = _STAMP.search(line)
        if stamp is None:
            # A partial first line, or noise: skipped while hunting for the next timestamp.
            self.bytes_skipped += len(line) + 1
            return None
        at = stamp.start()
        if at:
            self.bytes_skipped += at
        # Fields by key, wherever the model puts them (token sets differ by model).
        raw_spo2 = _field(line, b" SPO2=", at)
        raw_pr = _field(line, b" BPM=", at)
        if raw_spo2 is None or raw_pr is None:
            self.frames_bad += 1
            return None
        try:
            spo2 = _int_field(raw_spo2, _MAX_SPO2)
            pr = _int_field(raw_pr, _MAX_PR)
            pi = _pi_field(_field(line, b" PI=", at))
            exc_raw = _field(line, b" EXC=", at)
            flags = self._flags(int(exc_raw, 16)) if exc_raw is not None else Quality.NONE
        except ValueError:
            self.frames_bad += 1
            return None
        if int(flags) & _PROBE_OFF:
            # The device says there is no patient signal: never report its numbers.
            spo2 = pr = None
            pi = None
        self.records += 1
        return Reading(
            t=t,
            device=self.device,
            spo2=spo2,
            pr=pr,
            pi=pi,
            flags=flags,
            device_time=_device_time(line, at),
        )

    def _lines(self, lines: list[bytes], times: list[float]) -> list[Reading | None]:
        """Each line by the layout of its shape when one is known: the same readings and
        counts as `_line` gives, without searching for keys; `_line` otherwise (and the
        shape is learnt from it)."""
        layouts, minutes, excs = self._layouts, self._minutes, self._excs
        device, line_fn, none = self.device, self._line, Quality.NONE
        out: list[Reading | None] = []
        append = out.append
        records = skipped = 0
        for line, t in zip(lines, times, strict=True):
            shape = line.translate(_SHAPE)
            layout = layouts.get(shape)
            if layout is None:
                append(self._learn(line, shape, t))
                continue
            checks, spo2_at, pr_at, pi_at, exc_at, minute_at, second_at, before = layout
            for at, key in checks:
                if line[at] != key:
                    layout = _LINE_BY_LINE
            if layout is _LINE_BY_LINE:
                append(line_fn(line, t))
                continue
            spo2 = None if spo2_at is None else int(line[spo2_at])
            pr = None if pr_at is None else int(line[pr_at])
            pi = None if pi_at is None else float(line[pi_at])
            if (
                (spo2 is not None and spo2 > _MAX_SPO2)
                or (pr is not None and pr > _MAX_PR)
                or (pi is not None and pi > _MAX_PI)
            ):
                append(line_fn(line, t))  # counted there as a bad frame
                continue
            if exc_at is None:
                flags, off = none, False
            else:
                raw = line[exc_at]
                known = excs.get(raw)
                if known is None:
                    known = self._exc(raw)
                flags, off = known
            minute = minutes.get(line[minute_at], _UNSEEN)
            if minute is _UNSEEN:
                minute = self._minute(line[minute_at])
            second = _SECONDS.get(line[second_at])
            skipped += before
            records += 1
            if off:
                # The device says there is no patient signal: never report its numbers.
                spo2 = pr = None
                pi = None
            append(
                Reading(
                    t=t,
                    device=device,
                    spo2=spo2,
                    pr=pr,
                    pi=pi,
                    flags=flags,
                    device_time=None if minute is None or second is None else minute + second,
                )
            )
        self.records += records
        self.bytes_skipped += skipped
        return out

    def _exc(self, raw: bytes) -> tuple[Quality, bool]:
        """The flags of an EXC field of plain hex digits, and whether they withhold values."""
        flags = self._flags(int(raw, 16))
        known = flags, bool(int(flags) & _PROBE_OFF)
        if len(self._excs) < _FLAG_CACHE_SIZE:
            self._excs[raw] = known
        return known

    def _minute(self, raw: bytes) -> datetime | None:
        """The device clock's minute (`MM/DD/YY HH:MM:`), None where it is no time."""
        if len(self._minutes) >= _MAX_MINUTES:
            self._minutes.clear()
        minute = self._minutes[raw] = _device_time(raw + b"00 ", 0)
        return minute

    def _learn(self, line: bytes, shape: bytes, t: float) -> Reading | None:
        """`_line`, and the layout of the line's `shape` for the next lines of that shape."""
        layouts = self._layouts
        if len(layouts) >= _MAX_LAYOUTS:
            layouts.clear()  # noise filled it: the device's few shapes come back at once
            self._blocks.clear()
        layouts[shape] = _layout(line, shape) or _LINE_BY_LINE
        return self._line(line, t)

    def _flags(self, exc: int) -> Quality:
        flags = self._flag_cache.get(exc)
        if flags is None:
            flags = _exc_flags(exc)
            if len(self._flag_cache) < _FLAG_CACHE_SIZE:  # noise must not grow it without bound
                self._flag_cache[exc] = flags
        return flags


def _field(line: bytes, key: bytes, start: int) -> bytes | None:
    """The value of ` KEY=value` in `line` after `start`, or None when the key is absent."""
    i = line.find(key, start)
    if i < 0:
        return None
    i += len(key)
    j = line.find(b" ", i)
    return line[i:] if j < 0 else line[i:j]


def _device_time(line: bytes, at: int) -> datetime | None:
    """The device's local clock (`MM/DD/YY HH:MM:SS` at `at`; drifts; kept as metadata only)."""
    try:
        return datetime(  # noqa: DTZ001  (a device clock has no zone)
            2000 + int(line[at + 6 : at + 8]),
            int(line[at : at + 2]),
            int(line[at + 3 : at + 5]),
            int(line[at + 9 : at + 11]),
            int(line[at + 12 : at + 14]),
            int(line[at + 15 : at + 17]),
        )
    except ValueError:
        return None


class _Layout(NamedTuple):
    """Where the values are in every line of one shape, and what `_line` would find there:
    a slice of digits to read, or None for no value (dashes; for EXC, no such key)."""

    #: Keys with digits in them (`SPO2=`) are masked in the shape: their bytes, checked.
    checks: tuple[tuple[slice, bytes], ...]
    spo2: slice | None
    pr: slice | None
    pi: slice | None
    exc: slice | None
    minute: slice
    second: slice
    #: Bytes before the timestamp, skipped.
    skipped: int


#: The layout of a shape `_line` decodes without the layout (one it would count as bad).
_LINE_BY_LINE = _Layout((), None, None, None, None, slice(0), slice(0), 0)
#: Not in the minutes table yet (a device clock says 2000-2099).
_UNSEEN = datetime.min  # noqa: DTZ901  (a sentinel, never a time)


def _layout(line: bytes, shape: bytes) -> _Layout | None:
    """The layout of `line`'s `shape`, or None where a line of that shape may need `_line`'s
    full rules (no timestamp or key, a value that is neither plain digits nor dashes)."""
    stamp = _STAMP.search(line)
    if stamp is None:
        return None
    at = stamp.start()
    checks: list[tuple[slice, bytes]] = []
    spans: list[slice | None] = []
    for key, kind in ((b" SPO2=", "int"), (b" BPM=", "int"), (b" PI=", "float"), (b" EXC=", "hex")):
        i = line.find(key, at)
        if i < 0:
            if kind == "int":
                return None
            spans.append(None)
            continue
        # Where the masked key could also be, up to where `_line` finds it: the same bytes.
        masked = key.translate(_SHAPE)
        if masked != key:
            j = shape.find(masked, at)
            while 0 <= j <= i:
                checks.append((slice(j, j + len(key)), line[j : j + len(key)]))
                j = shape.find(masked, j + 1)
        start = i + len(key)
        end = line.find(b" ", start)
        end = len(line) if end < 0 else end
        raw = line[start:end]
        if kind == "hex":
            try:
                int(raw, 16)
            except ValueError:
                return None
            spans.append(slice(start, end))
            continue
        if b"--" in raw:
            spans.append(None)
            continue
        digits = raw.rstrip(b"%")
        plain = digits.isdigit() if kind == "int" else digits.replace(b".", b"", 1).isdigit()
        if not plain:
            return None
        spans.append(slice(start, start + len(digits)))
    spo2, pr, pi, exc = spans
    return _Layout(
        tuple(checks), spo2, pr, pi, exc, slice(at, at + 15), slice(at + 15, at + 17), at
    )


class _Columns(NamedTuple):
    """The values of a block's lines, field by field, as `_lines` reads each line."""

    spo2: Sequence[int | None]
    pr: Sequence[int | None]
    pi: Sequence[float | None]
    device_time: Callable[[int, int], list[datetime | None]]
    #: One EXC word for the whole block (a block whose EXC changes is read line by line).
    flags: Quality


#: The numbers of a block's lines: SpO2, PR, PI (its digits), the second of the device clock.
_FIELDS = 4
_PI, _SECOND = 2, 3
#: Digits of one field beyond which a number may not be exact in 64 bits (or as a double).
_MAX_DIGITS = 15


class _Block:
    """Whole lines of one shape, `size` bytes each with their CR LF, read as a matrix: one
    check that every byte is the shape's (a digit where it has a digit, the keys that the
    shape masks as they are), then one product for every number. Made from the shape's
    layout: it reads the values where the layout reads them."""

    __slots__ = (
        *("columns", "exc", "fields", "low", "maxima", "minute", "pi_scale", "size", "span"),
        "weights",
    )

    def __init__(self, layout: _Layout, first: bytes) -> None:
        import numpy as np

        row = np.frombuffer(first, dtype=np.uint8)
        digit = (row >= ord("0")) & (row <= ord("9"))
        for at, _key in layout.checks:
            digit[at] = False  # a key's digit (`SPO2=`): this byte and no other
        if layout.exc is not None:
            digit[layout.exc] = False  # one EXC word: these bytes
        self.size = len(first)
        self.exc, self.minute = layout.exc, layout.minute
        self.low = np.where(digit, ord("0"), row).astype(np.uint8)
        #: Past `low`: 9 where a digit goes, 0 where the byte is fixed.
        self.span = np.where(digit, 9, 0).astype(np.uint8)
        columns: list[int] = []
        weights: list[list[int]] = []
        #: The fields the layout reads (None: dashes there, or no such key).
        self.fields: list[bool] = []
        places_after_dot = 0
        for field, span in enumerate((layout.spo2, layout.pr, layout.pi, layout.second)):
            if field != _SECOND:
                self.fields.append(span is not None)
            if span is None:
                continue
            places = [i for i in range(span.start, span.stop) if digit[i]]
            if len(places) > _MAX_DIGITS:
                msg = "too many digits for one number"
                raise ValueError(msg)
            for k, i in enumerate(places):
                columns.append(i)
                weight = [0] * _FIELDS
                weight[field] = 10 ** (len(places) - 1 - k)
                weights.append(weight)
            if field == _PI:  # its digits after the dot
                dot = first.find(b".", span.start, span.stop)
                places_after_dot = 0 if dot < 0 else sum(1 for i in places if i > dot)
        self.pi_scale = 10.0**places_after_dot
        #: Past these a value is impossible (`_line` counts the line as bad).
        self.maxima = [_MAX_SPO2, _MAX_PR, _MAX_PI * self.pi_scale]
        self.columns = np.array(columns, dtype=np.intp)
        # Floats: a product in floats is BLAS's, and exact (every number is below 2**53).
        self.weights = np.array(weights, dtype=np.float64).reshape(len(columns), _FIELDS)

    @staticmethod
    def of(layout: _Layout, first: bytes) -> _Block | None:
        """The block of `layout`'s shape, from `first` (a line of it, CR LF included); None
        where its lines are not read by the layout alone."""
        if layout is _LINE_BY_LINE or layout.skipped or len(first) - 2 > MAX_LINE:
            return None
        try:
            return _Block(layout, first)
        except ValueError:
            return None

    def numbers(self, buf: bytes, pos: int, rows: int) -> list[list[int]]:
        """Each field's numbers for the lines of `buf` from `pos` (up to `rows` of them) that
        have the block's bytes and possible values, up to the first that has not."""
        import numpy as np

        size = self.size
        d = np.frombuffer(buf, dtype=np.uint8, count=rows * size, offset=pos)
        d = d.reshape(rows, size) - self.low
        v = np.dot(d[:, self.columns], self.weights)
        numbers: list[list[int]] = v.astype(np.int64).T.tolist()
        maxima = self.maxima
        if (d <= self.span).all() and all(max(numbers[f]) <= maxima[f] for f in range(_SECOND)):
            return numbers
        good = (d <= self.span).all(axis=1) & (v[:, :_SECOND] <= maxima).all(axis=1)
        count = int(good.argmin())
        return [column[:count] for column in numbers]


#: Not worked out yet (`_blocks`): a block is made when a read of its shape may use one.
_UNTAUGHT = _Block.__new__(_Block)
