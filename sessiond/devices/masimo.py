"""Masimo "ASCII 1" serial output (Radical-7, Rad-8, Rad-87, Root): one text line a second.

`MM/DD/YY HH:MM:SS` then space-separated `KEY=value` tokens, CR LF. Token sets differ by
model and firmware, so fields are read by key, never by column (reference/devices.md §2).
Missing values are dashes; the EXC hex word carries the quality bits.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import ClassVar

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
