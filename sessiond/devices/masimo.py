"""Masimo "ASCII 1" serial output (Radical-7, Rad-8, Rad-87, Root): one text line a second.

`MM/DD/YY HH:MM:SS` then space-separated `KEY=value` tokens, CR LF. Token sets differ by
model and firmware, so fields are found by key, never by a fixed column (reference/devices.md
§2). Missing values are dashes; the EXC hex word carries the quality bits.

One pass per line, whatever the chunk: a line whose shape (its digits masked) was seen
before is read at the places its keys were found in the first line of that shape; the
first line of a shape, and any line the layout cannot vouch for, goes through the full
rules (`_line`).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import ClassVar, NamedTuple

from sessiond.devices.decoder import SerialSettings
from sessiond.devices.lines import LineDecoder
from sessiond.model import PROBE_OFF, Quality, Reading

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
        #: Flags, and whether they withhold the numbers, by EXC field.
        self._excs: dict[bytes, tuple[Quality, bool]] = {}
        #: The device clock's minutes (`MM/DD/YY HH:MM:`), None where it is no time.
        self._minutes: dict[bytes, datetime | None] = {}

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
