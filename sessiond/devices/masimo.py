"""Masimo "ASCII 1" serial output (Radical-7, Rad-8, Rad-87, Root): one text line a second.

`MM/DD/YY HH:MM:SS` then space-separated `KEY=value` tokens, CR LF. Token sets differ by
model and firmware, so fields are read by key, never by column (reference/devices.md §2).
Missing values are dashes; the EXC hex word carries the quality bits.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from sessiond.devices.decoder import SerialSettings
from sessiond.devices.lines import LineDecoder
from sessiond.model import PROBE_OFF, Quality, Reading

if TYPE_CHECKING:
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


#: Lines of one length decoded by columns when at least this many share a layout (below,
#: numpy's cost per call is more than it saves: a live link reads a line or two at a time).
_COLUMN_LINES = 128
_STAMP_WIDTH = 18  # `MM/DD/YY HH:MM:SS `
_STAMP_DIGITS = [0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16]
_DIGIT_0, _DIGIT_9, _DOT, _DASH, _PERCENT, _SPACE = 48, 57, 46, 45, 37, 32
_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
#: Hex digit values by byte (-1: not a hex digit).
_HEX = np.full(256, -1, dtype=np.int64)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)
_MAX_HEX_DIGITS = 15


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
        """Lines that share a length and a layout (the same keys in the same places: one
        device's output) are decoded by columns with numpy; the rest one by one. The same
        readings and counts as `_line` on each: a row whose fields are anything but plain
        digits or dashes is left to `_line`."""
        if len(lines) < _COLUMN_LINES:
            return super()._lines(lines, times)
        by_length: dict[int, list[int]] = {}
        for i, line in enumerate(lines):
            by_length.setdefault(len(line), []).append(i)
        out: dict[int, Reading | None] = {}
        for rows in by_length.values():
            if len(rows) >= _COLUMN_LINES:
                self._columns([lines[i] for i in rows], rows, times, out)
        line_fn = self._line
        return [
            out[i] if i in out else line_fn(line, t)
            for i, (line, t) in enumerate(zip(lines, times, strict=True))
        ]

    def _columns(
        self,
        lines: list[bytes],
        rows: list[int],
        times: list[float],
        out: dict[int, Reading | None],
    ) -> None:
        """Decode equal-length `lines` (rows `rows` of the call) into `out` by columns."""
        head = lines[0]
        size = len(head)
        spans = {key: _span(head, key) for key in (b" SPO2=", b" BPM=", b" PI=", b" EXC=")}
        if _STAMP.match(head) is None or spans[b" SPO2="] is None or spans[b" BPM="] is None:
            return
        m = np.frombuffer(b"".join(lines), dtype=np.uint8).reshape(len(lines), size)
        # The same layout as the first line: spaces, keys and stamp separators in place.
        same = ((m == _SPACE) == (m[0] == _SPACE)).all(axis=1)
        fixed = _fixed_columns(head)
        same &= (m[:, fixed] == m[0, fixed]).all(axis=1)
        stamp = m[:, _STAMP_DIGITS].astype(np.int64) - _DIGIT_0
        same &= ((stamp >= 0) & (stamp <= 9)).all(axis=1)  # noqa: PLR2004
        spo2, spo2_none, spo2_ok, spo2_bad = _int_column(m, spans[b" SPO2="], _MAX_SPO2)
        pr, pr_none, pr_ok, pr_bad = _int_column(m, spans[b" BPM="], _MAX_PR)
        bad = spo2_bad | pr_bad
        same &= spo2_ok & pr_ok
        pi_span = spans[b" PI="]
        if pi_span is None:
            pi = np.zeros(len(lines))
            pi_none = np.ones(len(lines), dtype=np.bool_)
        else:
            pi, pi_none, pi_ok, pi_bad = _pi_column(m, pi_span)
            same &= pi_ok
            bad |= pi_bad
        exc_span = spans[b" EXC="]
        if exc_span is None:
            exc = np.zeros(len(lines), dtype=np.int64)
        else:
            exc, exc_ok = _hex_column(m, exc_span)
            same &= exc_ok
        stamps = _device_times(stamp)
        flags_of = {v: self._flags(v) for v in set(exc[same].tolist())} if exc_span else {}
        device = self.device
        for k, row, ok, is_bad, s2, s2n, p, pn, pv, pvn, e, when in zip(
            range(len(lines)), rows, same.tolist(), bad.tolist(), spo2.tolist(),
            spo2_none.tolist(), pr.tolist(), pr_none.tolist(), pi.tolist(), pi_none.tolist(),
            exc.tolist(), stamps, strict=True,
        ):  # fmt: skip
            del k
            if not ok:
                continue  # left to `_line`
            if is_bad:
                self.frames_bad += 1
                out[row] = None
                continue
            flags = flags_of[e] if exc_span else Quality.NONE
            if int(flags) & _PROBE_OFF:
                reading = Reading(t=times[row], device=device, flags=flags, device_time=when)
            else:
                reading = Reading(
                    t=times[row],
                    device=device,
                    spo2=None if s2n else s2,
                    pr=None if pn else p,
                    pi=None if pvn else pv,
                    flags=flags,
                    device_time=when,
                )
            self.records += 1
            out[row] = reading

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


def _span(line: bytes, key: bytes) -> tuple[int, int] | None:
    """Where the value of ` KEY=value` is in `line` (as `_field` finds it), or None."""
    i = line.find(key)
    if i < 0:
        return None
    i += len(key)
    j = line.find(b" ", i)
    return i, len(line) if j < 0 else j


def _fixed_columns(line: bytes) -> npt.NDArray[np.intp]:
    """The columns that make a line's layout: the stamp's separators and, in every token
    after it, the key up to its `=` (a token without one, whole)."""
    fixed = [2, 5, 8, 11, 14, 17]
    at = _STAMP_WIDTH
    for token in line[_STAMP_WIDTH:].split(b" "):
        eq = token.find(b"=")
        fixed += range(at, at + (len(token) if eq < 0 else eq + 1))
        at += len(token) + 1
    return np.array(fixed, dtype=np.intp)


def _digits_value(
    cols: npt.NDArray[np.uint8], count: npt.NDArray[np.intp], base: int = 10
) -> npt.NDArray[np.int64]:
    """The number the first `count[i]` digit columns of row i spell (base 10)."""
    value = np.zeros(len(cols), dtype=np.int64)
    for j in range(cols.shape[1]):
        take = j < count
        value = np.where(take, value * base + (cols[:, j].astype(np.int64) - _DIGIT_0), value)
    return value


def _int_column(
    m: npt.NDArray[np.uint8], span: tuple[int, int] | None, maximum: int
) -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.bool_]
]:
    """`_int_field` by rows: value, no value (dashes), plain (digits, then `%`s), out of range."""
    assert span is not None
    v = m[:, span[0] : span[1]]
    n, w = v.shape
    dashes = (
        ((v[:, :-1] == _DASH) & (v[:, 1:] == _DASH)).any(axis=1) if w > 1 else np.zeros(n, bool)
    )
    is_digit = (v >= _DIGIT_0) & (v <= _DIGIT_9)
    lead = np.where(is_digit.all(axis=1), w, (~is_digit).argmax(axis=1))
    tail_pct = ((np.arange(w) < lead[:, None]) | (v == _PERCENT)).all(axis=1)
    plain = (lead >= 1) & tail_pct
    value = _digits_value(v, lead)
    ok = dashes | plain
    return value, dashes, ok, ~dashes & plain & (value > maximum)


def _pi_column(
    m: npt.NDArray[np.uint8], span: tuple[int, int]
) -> tuple[
    npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.bool_]
]:
    """`_pi_field` by rows: value, no value, plain (digits with one dot, then `%`s), range."""
    v = m[:, span[0] : span[1]]
    n, w = v.shape
    dashes = (
        ((v[:, :-1] == _DASH) & (v[:, 1:] == _DASH)).any(axis=1) if w > 1 else np.zeros(n, bool)
    )
    is_digit = (v >= _DIGIT_0) & (v <= _DIGIT_9)
    is_dot = v == _DOT
    number = is_digit | is_dot
    lead = np.where(number.all(axis=1), w, (~number).argmax(axis=1))
    inside = np.arange(w) < lead[:, None]
    plain = (inside | (v == _PERCENT)).all(axis=1)
    dots = (is_dot & inside).sum(axis=1)
    digits = (is_digit & inside).sum(axis=1)
    plain &= (dots <= 1) & (digits >= 1) & (digits <= _MAX_HEX_DIGITS)
    n_value = np.zeros(n, dtype=np.int64)
    frac = np.zeros(n, dtype=np.int64)
    seen_dot = np.zeros(n, dtype=np.bool_)
    for j in range(w):
        d = is_digit[:, j] & inside[:, j]
        n_value = np.where(d, n_value * 10 + (v[:, j].astype(np.int64) - _DIGIT_0), n_value)
        frac += d & seen_dot
        seen_dot |= is_dot[:, j] & inside[:, j]
    # N / 10**k: the correctly rounded value, as float() reads the digits.
    value = n_value / 10.0 ** np.minimum(frac, _MAX_HEX_DIGITS)
    ok = dashes | plain
    return value, dashes, ok, ~dashes & plain & (value > _MAX_PI)


def _hex_column(
    m: npt.NDArray[np.uint8], span: tuple[int, int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """`int(raw, 16)` by rows, and which rows are plain hex digits."""
    v = _HEX[m[:, span[0] : span[1]]]
    ok = (v >= 0).all(axis=1) & (0 < v.shape[1] <= _MAX_HEX_DIGITS)
    value = np.zeros(len(v), dtype=np.int64)
    for j in range(v.shape[1]):
        value = value * 16 + np.maximum(v[:, j], 0)
    return value, ok


def _device_times(stamp: npt.NDArray[np.int64]) -> list[datetime | None]:
    """`_device_time` by rows from the stamp's 12 digits (None where it is no date)."""
    d = stamp
    month, day, year = d[:, 0] * 10 + d[:, 1], d[:, 2] * 10 + d[:, 3], d[:, 4] * 10 + d[:, 5]
    hour, minute, second = d[:, 6] * 10 + d[:, 7], d[:, 8] * 10 + d[:, 9], d[:, 10] * 10 + d[:, 11]
    leap = (year % 4 == 0) & (month == 2)  # noqa: PLR2004  (2000-2099: every 4th year)
    valid = (month >= 1) & (month <= 12) & (day >= 1)  # noqa: PLR2004
    valid &= day <= _DAYS[np.clip(month, 0, 12)] + leap
    valid &= (hour < 24) & (minute < 60) & (second < 60)  # noqa: PLR2004
    months = np.where(valid, (2000 + year - 1970) * 12 + month - 1, 0).astype("datetime64[M]")
    seconds = (hour * 3600 + minute * 60 + second).astype("timedelta64[s]")
    when = months.astype("datetime64[D]") + (np.where(valid, day, 1) - 1).astype("timedelta64[D]")
    stamps = (when + seconds).astype("datetime64[s]")
    stamps[~valid] = np.datetime64("NaT")
    out: list[datetime | None] = stamps.tolist()
    return out
