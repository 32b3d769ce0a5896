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
from sessiond.model import PROBE_OFF, Quality, Reading, ReadingColumns

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
_MAX_MINUTES = 1024
_SECONDS = {b"%02d" % s: timedelta(seconds=s) for s in range(60)}
_LF = ord("\n")
#: The same by the number two digits make (None past 59: no time).
_SECOND_BY_NUMBER: list[timedelta | None] = [*_SECONDS.values(), *[None] * 40]
#: A read this long may be read as a block (two seconds of a 9600-baud link: a live link's
#: read holds a line or so, and never loads numpy) if it holds this many whole lines.
_BLOCK_BYTES = 2048
_BLOCK_LINES = 4


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
        #: Flags, and whether they withhold the numbers, by EXC field.
        self._excs: dict[bytes, tuple[Quality, bool]] = {}
        #: The device clock's minutes (`MM/DD/YY HH:MM:`), None where it is no time.
        self._minutes: dict[bytes, datetime | None] = {}

    def feed(self, data: bytes, t: float) -> list[Reading]:
        buf = self._pending + data if self._pending else data
        block = self._block(buf) if len(buf) >= _BLOCK_BYTES else None
        if block is None:
            return super().feed(data, t)
        body, columns = block
        self._keep(buf[body:])
        return self._readings(columns, [t] * len(columns.spo2)).made()

    def feed_timed(
        self, data: bytes, ends: npt.NDArray[np.int64], times: npt.NDArray[np.float64]
    ) -> Timed:
        buf = self._pending + data if self._pending else data
        block = self._block(buf) if len(buf) >= _BLOCK_BYTES else None
        if block is None:
            return super().feed_timed(data, ends, times)
        import numpy as np

        body, columns = block
        off = len(self._pending)
        self._keep(buf[body:])
        count = len(columns.spo2)
        if len(ends) == 1:  # one piece: every line is of its time
            readings = self._readings(columns, [float(times[0])] * count)
            return Timed(readings, [0] * count, np.zeros(1, dtype=np.intp))
        # A line takes the time of the piece its CR came in (as when read line by line).
        size = body // count
        where = np.searchsorted(ends, np.arange(size - 2 - off, body - off, size), side="right")
        pieces = where.tolist()
        readings = self._readings(columns, times[where].tolist())
        frames = np.fromiter(dict.fromkeys(pieces), dtype=np.intp)  # ascending already
        return Timed(readings, pieces, frames)

    def _block(self, buf: bytes) -> tuple[int, _Columns] | None:
        """The whole lines at the start of `buf`, read as one block of one known shape: where
        they end, and their values; None where a line may need more (`_lines`)."""
        body = buf.rfind(b"\n") + 1
        first = buf.find(b"\n") + 1
        if not first or buf.find(b"\r", body) >= 0 or body < _BLOCK_LINES * first:
            return None
        count, rest = divmod(body, first)
        # One length, one CR LF each, no NUL: else the lines are not all of one shape, or
        # they are not what `_lines` would split them into.
        if (
            rest
            or buf.find(b"\r") != first - 2
            or buf[first - 1] != _LF
            or buf.find(b"\x00", 0, body) >= 0
        ):
            return None
        shape = buf[: first - 2].translate(_SHAPE)
        block = self._blocks.get(shape, _UNTAUGHT)
        if block is _UNTAUGHT:
            layout = self._layouts.get(shape)
            if layout is None:
                return None  # `_lines` learns the shape from its first line
            block = self._blocks[shape] = _Block.of(layout, buf[:first])
        if block is None:
            return None
        numbers = block.numbers(buf[:body], count)
        if numbers is None:
            return None
        columns = self._columns(block, numbers, buf[:body])
        return None if columns is None else (body, columns)

    def _columns(self, block: _Block, numbers: list[list[int]], body: bytes) -> _Columns | None:
        """A block's values as `_lines` gives them line by line; None where a line needs
        more than its layout (an impossible value, counted by `_line`) or the EXC word
        changes within the block."""
        spo2s, prs, pis, excs, seconds = numbers
        has_spo2, has_pr, has_pi, has_exc = block.fields[:4]
        count = len(spo2s)
        if (
            (has_spo2 and max(spo2s) > _MAX_SPO2)
            or (has_pr and max(prs) > _MAX_PR)
            or (has_pi and max(pis) > _MAX_PI * block.pi_scale)
            or (has_exc and excs.count(excs[0]) != count)
        ):
            return None
        if block.exc is None:
            flags, withheld = Quality.NONE, False
        else:
            raw = body[block.exc]
            known = self._excs.get(raw)
            flags, withheld = self._exc(raw) if known is None else known
        minute_at, size = block.minute, block.size

        def device_time(start: int, stop: int) -> list[datetime | None]:
            """The device clock of lines `start` to `stop` (metadata: worked out when asked)."""
            out: list[datetime | None] = []
            last, minute = b"", None
            for i in range(start, stop):
                raw = body[i * size + minute_at.start : i * size + minute_at.stop]
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


#: The numbers of a block's lines: SpO2, PR, PI, the EXC key (equal numbers, equal bytes),
#: and the second of the device clock.
_FIELDS = 5
#: Digits of one field beyond which a number may not be exact in 64 bits (or as a double).
_MAX_DIGITS = 15


class _Block:
    """Whole lines of one shape, `size` bytes each with their CR LF, read as a matrix: one
    check that every byte is the shape's (a digit where it has a digit, the keys that the
    shape masks as they are), then one product for every number. Made from the shape's
    layout: it reads the values where the layout reads them."""

    __slots__ = ("columns", "exc", "fields", "low", "minute", "pi_scale", "size", "span", "weights")

    def __init__(self, layout: _Layout, first: bytes) -> None:
        import numpy as np

        row = np.frombuffer(first, dtype=np.uint8)
        digit = (row >= ord("0")) & (row <= ord("9"))
        for at, _key in layout.checks:
            digit[at] = False  # a key's digit (`SPO2=`): this byte and no other
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
        spans = (layout.spo2, layout.pr, layout.pi, layout.exc, layout.second)
        for field, span in enumerate(spans):
            self.fields.append(span is not None)
            if span is None:
                continue
            places = [i for i in range(span.start, span.stop) if digit[i]]
            if len(places) > _MAX_DIGITS:
                msg = "too many digits for one number"
                raise ValueError(msg)
            base = 16 if field == 3 else 10  # noqa: PLR2004 - EXC is hex
            for k, i in enumerate(places):
                columns.append(i)
                weight = [0] * _FIELDS
                weight[field] = base ** (len(places) - 1 - k)
                weights.append(weight)
            if field == 2:  # noqa: PLR2004 - PI: its digits after the dot
                dot = first.find(b".", span.start, span.stop)
                places_after_dot = 0 if dot < 0 else sum(1 for i in places if i > dot)
        self.pi_scale = 10.0**places_after_dot
        self.columns = np.array(columns, dtype=np.intp)
        # Floats: a product in floats is BLAS's, and exact (every number is below 2**53).
        self.weights = np.array(weights, dtype=np.float64).reshape(len(columns), _FIELDS)

    @staticmethod
    def of(layout: _Layout, first: bytes) -> _Block | None:
        """The block of `layout`'s shape, from `first` (a line of it, CR LF included); None
        where its lines are not read by the layout alone."""
        if layout is _LINE_BY_LINE or layout.skipped:
            return None
        try:
            return _Block(layout, first)
        except ValueError:
            return None

    def numbers(self, body: bytes, count: int) -> list[list[int]] | None:
        """Each field's numbers for the `count` lines of `body`; None unless every line has
        the shape."""
        import numpy as np

        d = np.frombuffer(body, dtype=np.uint8).reshape(count, self.size) - self.low
        if not (d <= self.span).all():
            return None
        numbers: list[list[int]] = (d[:, self.columns] @ self.weights).astype(np.int64).T.tolist()
        return numbers


#: Not worked out yet (`_blocks`): a block is made when a read of its shape may use one.
_UNTAUGHT = _Block.__new__(_Block)
