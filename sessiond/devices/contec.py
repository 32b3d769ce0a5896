"""Contec CMS50 family (CMS50D+/E/F, CMS60 and rebrands): the V7.0 and the legacy live streams.

Two incompatible protocols by model and firmware (reference/devices.md §1):

- `contec-v7`: 115200 8N1, 9-byte packets at ~60 Hz once the host sends `7D 81 A1 ...`.
  Byte 0 is the packet type (bit 7 clear); byte 1 is a "high byte" (bit 7 set) whose bit k
  is the real bit 7 of byte k+2; every later byte has bit 7 set on the wire.
- `contec-legacy`: 19200 8O1, 5-byte packets at ~60 Hz, sent unprompted; only byte 0 has
  bit 7 set.

Neither has a checksum: framing rests on the bit-7 pattern alone, so a packet is only taken
when all its bytes have the pattern, and a sync byte inside a packet breaks it.

Readings (DESIGN §6): the device repeats its numerics 60 times a second, so a packet gives a
`Reading` only when its values or flags differ from the last Reading's, or when at least
`EMIT_EVERY_S` has passed since it (and nothing changed; `RepeatingDecoder`). The pleth is a
waveform, not readings: every packet's sample goes to `waveform()` (the link publishes it for
the console). `records` counts every packet decoded from a valid frame, emitted or not.

Time: `feed(data, t)` stamps what it decodes with `t`; `feed_timed` takes many pieces at once,
each with its own arrival time, and stamps a packet with the time of the piece its last byte
came in. Either way a Reading's `t` is the arrival of the packet that gave it, and the
Readings do not depend on how the bytes were cut into calls.

The work per call is done by run of back-to-back valid packets. What a live link reads (a
few packets) is framed with regular expressions, the key fields pulled out by strided slices
and `bytes.translate` and interleaved into one string in which a backreference pattern finds
the stretches of equal packets. A long buffer (a capture block) is framed with numpy, a
window of packets at a time, and each packet's key read as one machine word, so that the
stretches are where consecutive words differ. Either way Python touches only the packets
that give a Reading (about one a second), found by bisecting the arrival times.
"""

# ruff: noqa: PLC0415 - numpy is imported where a bulk path needs it: a live link never loads it

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from sessiond.devices.decoder import (
    Arrivals,
    RepeatingDecoder,
    SerialSettings,
    interleave,
    stretches,
)
from sessiond.model import Quality

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import numpy.typing as npt

    from sessiond.devices.decoder import Values
    from sessiond.model import Reading

_MAX_SPO2 = 100  # both protocols: > 100 is the device's "no value" (127 is the usual one)
_MAX_PR = 254  # V7.0: "> 254 invalid"; the legacy PR has the same 8 bits, 255 = all ones
_MAX_PI_RAW = 10000  # 100.00 %; 0xFFFF means "PI not supported"
#: PR values that mean "no reading" when they come without a SpO2 value (127: all 7 bits set).
_NO_READING_PR = frozenset({0, 127})

# --------------------------------------------------------------------------------------------
# V7.0
# --------------------------------------------------------------------------------------------

#: Every V7.0 reply is at most this long; a partial packet kept for the next call is shorter.
V7_MAX_FRAME = 9
_V7_LIVE_SIZE = 9  # type 0x01

#: Reply length by type byte (OSCAR `cms50f37_loader.cpp::processBytes`, whose table has 0 for
#: the live type only because its live mode is disabled: live packets are 9 bytes). 0 = unknown.
_V7_KNOWN_SIZES = (0, 9, 9, 9, 9, 9, 4, 8, 8, 6, 4, 4, 2, 0, 3, 8, 3, 9, 8, 9, 9)
_V7_SIZES = bytes(_V7_KNOWN_SIZES).ljust(0x80, b"\0")

_V7_TYPE_BYTE = re.compile(rb"[\x00-\x7f]")
_V7_LIVE_RUN = re.compile(rb"(?:\x01[\x80-\xff]{8})+")

# Fields of a live packet, after the high bit is restored (wire index = data index + 2):
# D0 [2]: 3..0 signal, 4 searching too long, 5 SpO2 dropping, 6 beep, 7 probe error/finger out
# D1 [3]: 6..0 pleth, 7 searching for pulse
# D2 [4]: 3..0 bar graph, 4 PI invalid
# D3 [5]: PR; D4 [6]: SpO2; D5, D6 [7, 8]: PI low, high.
_HB_FINGER_OUT = 0x01  # high-byte bit 0 = D0 bit 7
_HB_SEARCHING = 0x02  # high-byte bit 1 = D1 bit 7
_HB_PR_MSB = 0x08  # high-byte bit 3 = D3 bit 7
_HB_SPO2_MSB = 0x10
_HB_PI_LO_MSB = 0x20
_HB_PI_HI_MSB = 0x40
#: High-byte bits that carry meaning for a Reading (bit 2 is the bar graph's, which is not kept).
_HB_KEY = _HB_FINGER_OUT | _HB_SEARCHING | _HB_PR_MSB | _HB_SPO2_MSB | _HB_PI_LO_MSB | _HB_PI_HI_MSB
_D0_SEARCH_TOO_LONG = 0x10
_D2_PI_INVALID = 0x10
_LOW7 = 0x7F


def _mask_table(mask: int) -> bytes:
    """A `bytes.translate` table that ANDs every byte with `mask` (a whole column in C)."""
    return bytes(b & mask for b in range(256))


_MASK_LOW7 = _mask_table(_LOW7)
_MASK_HB_KEY = _mask_table(_HB_KEY)
_MASK_D0_KEY = _mask_table(_D0_SEARCH_TOO_LONG)
_MASK_D2_KEY = _mask_table(_D2_PI_INVALID)
#: The key of a live packet as one little-endian word of its wire bytes 1..8.
_V7_KEY_MASK = int.from_bytes(
    bytes((_HB_KEY, _D0_SEARCH_TOO_LONG, 0, _D2_PI_INVALID, 0xFF, 0xFF, 0xFF, 0xFF)), "little"
)
_HIGH_BITS_8 = 0x8080808080808080


def _flag_table(*bit_flags: Quality) -> tuple[Quality, ...]:
    """Quality for every combination of status bits (bit i of the index → `bit_flags[i]`)."""
    table = []
    for index in range(1 << len(bit_flags)):
        flags = Quality.NONE
        for bit, flag in enumerate(bit_flags):
            if index >> bit & 1:
                flags |= flag
        table.append(flags)
    return tuple(table)


# Index: 1 finger out / probe error, 2 searching for pulse, 4 searching too long. Precomputed so
# that the hot path does no IntFlag arithmetic.
_V7_FLAGS = _flag_table(Quality.SENSOR_OFF, Quality.SEARCHING, Quality.SEARCHING)

#: `7D 81 <cmd> 80 80 80 80 80 80`: the host → device frame (parameters OR 0x80 in bytes 3..8).
_V7_CMD_START_LIVE = 0xA1
_V7_CMD_STOP_LIVE = 0xA2


def _v7_command(cmd: int) -> bytes:
    return bytes((0x7D, 0x81, cmd)) + b"\x80" * 6


_V7_START = _v7_command(_V7_CMD_START_LIVE)
_V7_STOP = _v7_command(_V7_CMD_STOP_LIVE)


def _v7_values(key: bytes) -> Values:
    """SpO2, PR, PI and flags of a live packet from its key: wire bytes 1..8, masked (the
    pleth byte to 0)."""
    hb, d0_bit4, _, d2_bit4, pr_w, spo2_w, pi_lo_w, pi_hi_w = key
    flags = _V7_FLAGS[(hb & (_HB_FINGER_OUT | _HB_SEARCHING)) | (d0_bit4 >> 2)]  # 0x10 → 4
    if hb & _HB_FINGER_OUT:
        # Probe error or finger out: whatever numbers the packet holds are not the patient's.
        return None, None, None, flags
    # data[k] = (wire[k+2] & 0x7F) | (((hb >> k) & 1) << 7), for k = 3, 4, 5, 6.
    pr = (pr_w & _LOW7) | ((hb & _HB_PR_MSB) << 4)
    spo2 = (spo2_w & _LOW7) | ((hb & _HB_SPO2_MSB) << 3)
    pi = None
    if not d2_bit4:
        lo = (pi_lo_w & _LOW7) | ((hb & _HB_PI_LO_MSB) << 2)
        hi = (pi_hi_w & _LOW7) | ((hb & _HB_PI_HI_MSB) << 1)
        raw = lo | hi << 8
        # 0xFFFF = PI not supported. The scale is not public [I]: hundredths of a percent fits
        # the one sample with a value (CMS50I stored record: 590 → 5.90 %, a normal finger PI).
        if raw <= _MAX_PI_RAW:
            pi = raw / 100
    return _checked(spo2, pr, pi, flags)


def _checked(spo2: int, pr: int, pi: float | None, flags: Quality) -> Values:
    """Values out of range are no values; SpO2 missing with PR 127 (or 0) is the devices'
    "no reading" pattern (devices.md §1), not a pulse rate."""
    if spo2 > _MAX_SPO2:
        return None, None if pr in _NO_READING_PR else _pr(pr), pi, flags
    return spo2, _pr(pr), pi, flags


def _pr(pr: int) -> int | None:
    return pr if pr <= _MAX_PR else None


#: A buffer this long is framed with numpy; a shorter one (what a live link reads) with
#: regular expressions, which cost less per call.
_BULK_BYTES = 2048


def _bulk(buf: bytes) -> npt.NDArray[np.uint8] | None:
    """`buf` as an array when it is long enough for the bulk path (numpy is loaded then)."""
    if len(buf) < _BULK_BYTES:
        return None
    import numpy as np

    return np.frombuffer(buf, dtype=np.uint8)


#: Rows checked at a time when looking for the end of a run in bulk.
_BULK_ROWS = 4096


def _words(
    buf: bytes | npt.NDArray[np.uint8], start: int, count: int, step: int, dtype: np.dtype[Any]
) -> npt.NDArray[np.unsignedinteger[Any]]:
    """One little-endian word of `dtype.itemsize` bytes from `buf[start + k*step]`, per k."""
    import numpy as np

    view: npt.NDArray[np.unsignedinteger[Any]] = np.ndarray(
        (count,), dtype=dtype, buffer=buf, offset=start, strides=(step,)
    )
    return view.copy()


def _v7_rows_ok(a: npt.NDArray[np.uint8], s: int, rows: int) -> npt.NDArray[np.bool_]:
    """Which of `rows` 9-byte packets from `a[s]` are live packets (type 1, then 8 bytes with
    bit 7 set)."""
    import numpy as np

    e = s + rows * _V7_LIVE_SIZE
    high = _words(a, s + 1, rows, _V7_LIVE_SIZE, np.dtype("<u8"))
    ok: npt.NDArray[np.bool_] = (high & np.uint64(_HIGH_BITS_8)) == np.uint64(_HIGH_BITS_8)
    ok &= a[s:e:_V7_LIVE_SIZE] == 1
    return ok


def _legacy_rows_ok(a: npt.NDArray[np.uint8], s: int, rows: int) -> npt.NDArray[np.bool_]:
    """Which of `rows` 5-byte packets from `a[s]` are packets (bit 7 set in byte 0 only)."""
    import numpy as np

    e = s + rows * _LEGACY_SIZE
    low = _words(a, s + 1, rows, _LEGACY_SIZE, np.dtype("<u4"))
    ok: npt.NDArray[np.bool_] = (low & np.uint32(_HIGH_BITS_4)) == 0
    ok &= a[s:e:_LEGACY_SIZE] >= 0x80  # noqa: PLR2004
    return ok


def _bulk_run_end(
    a: npt.NDArray[np.uint8],
    s: int,
    size: int,
    rows_ok: Callable[[npt.NDArray[np.uint8], int, int], npt.NDArray[np.bool_]],
) -> int:
    """Where the run of back-to-back packets starting at `s` ends (`s`: none starts there);
    what `(?:PACKET)+` matches, found with numpy a window at a time."""
    e = s
    while True:
        rows = min((len(a) - e) // size, _BULK_ROWS)
        if rows <= 0:
            return e
        ok = rows_ok(a, e, rows)
        bad = int(ok.argmin())
        if not ok[bad]:
            return e + bad * size
        e += rows * size


class ContecV7Decoder(RepeatingDecoder):
    """Decoder for `contec-v7`: live type-0x01 packets; other replies are framed and skipped."""

    protocol: ClassVar[str] = "contec-v7"
    _size: ClassVar[int] = _V7_LIVE_SIZE
    _key_width: ClassVar[int] = 8
    _stretches: ClassVar[re.Pattern[bytes]] = stretches(8)
    _values = staticmethod(_v7_values)
    serial: ClassVar[SerialSettings] = SerialSettings(baudrate=115200)
    streaming: ClassVar[bool] = True
    # 60 packets a second, so 0.5 s is 30 missing packets: far beyond USB and loop jitter, and
    # short enough that a stream the device stopped (its ~30 s stream lifetime, a lost start or
    # keep-alive, an auto power-off) is noticed at once and the link reopens and restarts it.
    silence_timeout_s: ClassVar[float] = 0.5
    # The device stops streaming ~30 s after `A1` (MarkMLl) unless it hears from the host. The
    # keep-alive re-sends `A1` (as AndreasZachariae does) rather than `AF` (albertcbraun,
    # headrotor): `AF` only prolongs a running stream, while `A1` also restarts one that has
    # stopped, e.g. after the oximeter powered itself off and on with the cable's USB-serial
    # chip (and so the port) staying up. Every 5 s leaves 6 tries inside the 30 s lifetime.
    KEEPALIVE_INTERVAL_S: ClassVar[float] = 5.0

    def __init__(self, *, device: str) -> None:
        super().__init__(device=device)
        #: Well-formed replies of other types (version, model, stop acknowledgements ...).
        self.frames_other = 0

    @staticmethod
    def start_command() -> bytes:
        """`7D 81 A1 80 80 80 80 80 80`: start the live stream (send after every open)."""
        return _V7_START

    @staticmethod
    def keepalive_command() -> bytes:
        """What to send every `KEEPALIVE_INTERVAL_S` while the port is open: `A1` again."""
        return _V7_START

    @staticmethod
    def stop_command() -> bytes:
        """`7D 81 A2 ...`: stop the live stream (polite before closing; not required)."""
        return _V7_STOP

    def _decode(self, data: bytes, clock: Arrivals, out: list[Reading]) -> None:
        buf = self._pending + data if self._pending else data
        n = len(buf)
        bulk = _bulk(buf)
        i = 0
        while i < n:
            sync = _V7_TYPE_BYTE.search(buf, i)
            if sync is None:
                self.bytes_skipped += n - i
                i = n
                break
            s = sync.start()
            self.bytes_skipped += s - i
            if bulk is not None:
                end = _bulk_run_end(bulk, s, _V7_LIVE_SIZE, _v7_rows_ok)
            else:
                run = _V7_LIVE_RUN.match(buf, s)
                end = s if run is None else run.end()
            if end > s:
                i = end
                self._live_run(buf, s, i, clock, out, bulk=bulk)
                continue
            size = _V7_SIZES[buf[s]]
            if not size:
                self.bytes_skipped += 1  # unknown type: hunt on from the next byte
                i = s + 1
                continue
            broken = _V7_TYPE_BYTE.search(buf, s + 1, s + size)
            if broken is not None:
                # A type byte inside the packet: bytes were lost. Resync on that type byte.
                self.frames_bad += 1
                self.bytes_skipped += broken.start() - s
                i = broken.start()
                continue
            if s + size > n:
                i = s  # a partial packet: kept for the next call (shorter than V7_MAX_FRAME)
                break
            self.frames_other += 1
            i = s + size
        self._pending = bytes(buf[i:])

    def _live_run(
        self,
        buf: bytes,
        s: int,
        e: int,
        clock: Arrivals,
        out: list[Reading],
        *,
        bulk: npt.NDArray[np.uint8] | None,
    ) -> None:
        """Decode the back-to-back live packets in `buf[s:e]` into `out`."""
        step = _V7_LIVE_SIZE
        count = (e - s) // step
        self._pleth.append(buf[s + 3 : e : step].translate(_MASK_LOW7))
        self.records += count
        clock.run(s, e, step)
        if bulk is not None:
            import numpy as np

            words = _words(buf, s + 1, count, step, np.dtype("<u8")) & np.uint64(_V7_KEY_MASK)
            self._emit_words(words, 8, s, clock, out)
            return
        columns = (
            buf[s + 1 : e : step].translate(_MASK_HB_KEY),
            buf[s + 2 : e : step].translate(_MASK_D0_KEY),
            bytes(count),
            buf[s + 4 : e : step].translate(_MASK_D2_KEY),
            buf[s + 5 : e : step],
            buf[s + 6 : e : step],
            buf[s + 7 : e : step],
            buf[s + 8 : e : step],
        )
        self._emit(interleave(columns, count), s, count, clock, out)


# --------------------------------------------------------------------------------------------
# Legacy
# --------------------------------------------------------------------------------------------

_LEGACY_SIZE = 5
#: A partial legacy packet kept for the next call is shorter than this.
LEGACY_MAX_FRAME = _LEGACY_SIZE

_LEGACY_SYNC = re.compile(rb"[\x80-\xff]")
_LEGACY_RUN = re.compile(rb"(?:[\x80-\xff][\x00-\x7f]{4})+")

# Byte 0: 7 sync, 6 beep, 5 SpO2 dropping, 4 finger out, 3..0 signal. Byte 1: 6..0 pleth.
# Byte 2: 6 PR bit 7, 5 searching, 4 probe error, 3..0 bar graph. Byte 3: PR 6..0. Byte 4: SpO2.
_B0_FINGER_OUT = 0x10
_B2_PR_MSB = 0x40
_B2_SEARCHING = 0x20
_B2_PROBE_ERROR = 0x10
_MASK_B0_KEY = _mask_table(_B0_FINGER_OUT)
_B2_KEY = _B2_PR_MSB | _B2_SEARCHING | _B2_PROBE_ERROR
_MASK_B2_KEY = _mask_table(_B2_KEY)
#: The key of a legacy packet as one little-endian word of its bytes 1..4 (pleth masked out,
#: byte 0's finger-out bit put in its place).
_LEGACY_KEY_MASK = int.from_bytes(bytes((0, _B2_KEY, 0xFF, 0xFF)), "little")
_HIGH_BITS_4 = 0x80808080

# Index: 1 finger out, 2 searching for pulse, 4 probe / sensor error.
_LEGACY_FLAGS = _flag_table(Quality.SENSOR_OFF, Quality.SEARCHING, Quality.NO_SENSOR)


def _legacy_values(key: bytes) -> Values:
    """SpO2, PR, (no) PI and flags of a legacy packet from its key fields."""
    b0_bit4, b2, b3, b4 = key
    flags = _LEGACY_FLAGS[
        (b0_bit4 >> 4) | ((b2 & _B2_SEARCHING) >> 4) | ((b2 & _B2_PROBE_ERROR) >> 2)
    ]
    if b0_bit4 or b2 & _B2_PROBE_ERROR:
        return None, None, None, flags
    pr = ((b2 & _B2_PR_MSB) << 1) | b3
    return _checked(b4, pr, None, flags)


class ContecLegacyDecoder(RepeatingDecoder):
    """Decoder for `contec-legacy`: 5-byte live packets, synchronised on bit 7 of byte 0."""

    protocol: ClassVar[str] = "contec-legacy"
    _size: ClassVar[int] = _LEGACY_SIZE
    _key_width: ClassVar[int] = 4
    _stretches: ClassVar[re.Pattern[bytes]] = stretches(4)
    _values = staticmethod(_legacy_values)
    # XON/XOFF stays off: 0x11 and 0x13 occur in the binary data (devices.md §1.1).
    serial: ClassVar[SerialSettings] = SerialSettings(baudrate=19200, parity="O")
    streaming: ClassVar[bool] = True
    # 60 packets a second, sent without being asked: nothing to re-send, so the watchdog only
    # has to tell a dead cable from jitter; 1 s (60 missing packets) does, without flapping.
    silence_timeout_s: ClassVar[float] = 1.0

    def _decode(self, data: bytes, clock: Arrivals, out: list[Reading]) -> None:
        buf = self._pending + data if self._pending else data
        n = len(buf)
        bulk = _bulk(buf)
        i = 0
        while i < n:
            sync = _LEGACY_SYNC.search(buf, i)
            if sync is None:
                self.bytes_skipped += n - i
                i = n
                break
            s = sync.start()
            self.bytes_skipped += s - i
            if bulk is not None:
                end = _bulk_run_end(bulk, s, _LEGACY_SIZE, _legacy_rows_ok)
            else:
                run = _LEGACY_RUN.match(buf, s)
                end = s if run is None else run.end()
            if end > s:
                i = end
                self._run(buf, s, i, clock, out, bulk=bulk)
                continue
            broken = _LEGACY_SYNC.search(buf, s + 1, s + _LEGACY_SIZE)
            if broken is not None:
                self.frames_bad += 1
                self.bytes_skipped += broken.start() - s
                i = broken.start()
                continue
            i = s  # a partial packet: kept for the next call
            break
        self._pending = bytes(buf[i:])

    def _run(
        self,
        buf: bytes,
        s: int,
        e: int,
        clock: Arrivals,
        out: list[Reading],
        *,
        bulk: npt.NDArray[np.uint8] | None,
    ) -> None:
        step = _LEGACY_SIZE
        count = (e - s) // step
        self._pleth.append(buf[s + 1 : e : step])  # bit 7 is clear in every byte but the first
        self.records += count
        clock.run(s, e, step)
        if bulk is not None:
            import numpy as np

            words = _words(buf, s + 1, count, step, np.dtype("<u4")) & np.uint32(_LEGACY_KEY_MASK)
            words |= bulk[s:e:step] & np.uint8(_B0_FINGER_OUT)
            self._emit_words(words, 4, s, clock, out)
            return
        columns = (
            buf[s:e:step].translate(_MASK_B0_KEY),
            buf[s + 2 : e : step].translate(_MASK_B2_KEY),
            buf[s + 3 : e : step],
            buf[s + 4 : e : step],
        )
        self._emit(interleave(columns, count), s, count, clock, out)
