"""Nonin oximeters: binary Data Formats 7 and 2 (75 frames/s) and the ASCII output (1 line/s).

Binary (reference/devices.md §3.2): 5-byte checksummed frames, 25 to a packet, 3 packets a
second; the first frame of a packet has the SYNC status bit. Each frame carries one status
byte and one pleth sample; the packet's 25 VALUE bytes spell out HR, SpO2 and the rest.

Readings (DESIGN §6): the device restates its numerics 3 times a second, so a packet gives a
`Reading` only when its SpO2, PR or flags differ from the last Reading's, or when at least a
second has passed since it (`RepeatingDecoder`, as the Contec). Every packet decoded from
valid frames counts in `records`, and the packets that repeat the last Reading are reported
as frames (`Timed.frames`, the link's `on_frames`), so alarm timing does not depend on how
often Readings come. The pleth is a waveform: every packet's 25 samples go to `waveform()`.

What a Reading depends on is a packet's key (4 bytes): HR and SpO2 from VALUE bytes 0..2,
and a flag key, the status flag bits OR-ed over its 25 frames with the held red perfusion.
The keys of a run of packets are strided slices of the buffer, masked by `bytes.translate`
and interleaved, and a backreference pattern finds the stretches of equal keys (as for the
Contec), so that Python touches only the packets that give a Reading; the flag keys are
worked out only when a status byte calls for it (a flag bit, a red beat, red held). Whole
packets are checked in Python with bytes slices when the buffer holds a packet or two (what
a live link reads: numpy is not even imported), and with numpy when it is longer (4 KiB
reads, a capture block): one uint8 matrix product gives every frame's checksum, and a
`bytes.translate` checks the framing. After a break, every offset is checked at once
(numpy, or Python for a short buffer) to find the next SYNC followed by 24 good frames.

ASCII (§3.1): `SPO2=097 HR=072` lines, optionally after `HH:MM:SS `, with `*`, `F` or `B`
markers; dashes are "no value". One line a second: one Reading per line.
"""

from __future__ import annotations

import functools
import re
import sys
from array import array
from typing import TYPE_CHECKING, ClassVar

from sessiond.devices.decoder import RepeatingDecoder, SerialSettings, interleave, stretches
from sessiond.devices.lines import LineDecoder
from sessiond.model import Quality, Reading

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import numpy.typing as npt

    from sessiond.devices.decoder import Arrivals, Values

FRAME_LEN = 5
FRAMES_PER_PACKET = 25
PACKET_LEN = FRAME_LEN * FRAMES_PER_PACKET
#: Unparsed binary bytes kept between calls. Every offset that could still start a packet is
#: less than a packet from the end, so this also caps the buffer: noise never grows it.
MAX_PENDING = PACKET_LEN - 1
#: An ASCII line is ~30 characters; a line longer than this without a terminator is noise.
MAX_LINE = 256
#: A buffer this long is decoded with numpy; a shorter one (a packet or two, what a live link
#: reads) in Python, which costs less for so few and keeps numpy out of the live daemon.
BULK_BYTES = 3 * PACKET_LEN
#: A run of back-to-back packets found by the search is decoded with numpy from this many.
_BULK_PACKETS = 3

# STATUS byte (§3.2; the same bits in DF2 and DF7).
_BIT7 = 0x80  # always set: what tells a frame start from data
_SNSD = 0x40  # sensor disconnected or inoperable
_ARTF = 0x20  # artifact on this pulse
_OOT = 0x10  # out of track: no consecutive good pulses
_SNSA = 0x08  # sensor alarm: unusable data (the 9560 spec: "set when the finger is removed")
_SYNC = 0x01  # first frame of a packet
_STATUS_FLAG_BITS = _SNSD | _ARTF | _OOT | _SNSA
# Perfusion, bits 2..1, is a code, not flags: 01 green, 10 red, 11 yellow, 00 no beat. OR-ing
# green and red over a packet would read as yellow, so it is decoded frame by frame. The
# device sets it on each beat for 12 frames (160 ms; Onyx II 9560 OEM spec), so a packet
# may hold no beat: the last beat's perfusion is held until the next beat (`_red`).
# Red, "low/no pulse signal", is LOW_PERFUSION. Yellow ("low/marginal") and green carry no
# flag: LOW_SIGNAL would raise `signal_poor` for a marginal pulse but not for a red (worse)
# one, and LOW_PERFUSION would put most marginal patients under the low-perfusion flag.
_PERF_RED = 2

# Status bit → quality flag, OR-ed over the packet's 25 frames. SNSA → NO_SENSOR rather than
# LOW_SIGNAL: the device says its data is unusable (the 9560 spec sets it when the finger is
# removed), so the numbers must be withheld and `sensor_off` raised, which the PROBE_OFF
# flags do; LOW_SIGNAL would let numbers the device calls unusable reach the alarm limits.
# ARTF is per beat and OOT its sustained form ("no consecutive good pulses"): ARTIFACT and
# SEARCHING keep their numbers, for the alarm validity gate.
_STATUS_FLAGS: tuple[tuple[int, Quality], ...] = (
    (_SNSD, Quality.SENSOR_OFF),
    (_ARTF, Quality.ARTIFACT),
    (_OOT, Quality.SEARCHING),
    (_SNSA, Quality.NO_SENSOR),
)
_WITHHOLD = _SNSD | _SNSA  # the status bits that map to PROBE_OFF flags
#: Bits that end the held perfusion: without a tracked pulse there is no pulse quality.
_NO_PULSE = _SNSD | _SNSA | _OOT
_RED_KEY = 0x01  # held red perfusion, in a flag key (status bits never use bit 0 there)

# VALUE bytes 0, 1, 2 of a packet (§3.2): HR MSB, HR LSB, SpO2 — the recording values, not
# the "-D" display values (8, 19, 20) that hold the last number for 10 s after the finger
# is removed, while the recording values switch to "no value" at once. Offsets in a packet:
_HR_MSB_AT, _HR_LSB_AT, _SPO2_AT = 3, 3 + FRAME_LEN, 3 + 2 * FRAME_LEN
_NO_SPO2 = 127
_NO_HR = 511
_MAX_SPO2 = 100
#: Nonin specifies 18-321 bpm; a number above that is not a pulse rate. [I]: from Nonin spec
#: sheets, not yet in devices.md.
_MAX_PR = 321

# A packet's key, the bytes `_values` reads: HR MSB (2 bits), HR LSB (7 bits), SpO2, and the
# flag key (status flag bits | held red).
_KEY_WIDTH = 4


def _table(fn: Callable[[int], int]) -> bytes:
    """A `bytes.translate` table: byte b → fn(b)."""
    return bytes(fn(b) for b in range(256))


#: A status byte's bit 7 and SYNC; a packet's are `_FRAMING` (SYNC on its first frame only).
_FRAMING_OF = _table(lambda b: b & (_BIT7 | _SYNC))
_FRAMING = bytes([_BIT7 | _SYNC] + [_BIT7] * (FRAMES_PER_PACKET - 1))
_DF2_STARTS = b"\x01" * FRAMES_PER_PACKET
#: 1 for a status byte that may give a flag (a flag bit, a red beat): without one in a
#: packet, and with no red perfusion held, the packet has no flags and holds none.
_MARK_OF = _table(lambda b: int(bool(b & _STATUS_FLAG_BITS) or (b >> 1) & 0x03 == _PERF_RED))
#: A status byte's beat: 0 none, 1 green or yellow, 2 red (see `_flag_keys`).
_BEAT_OF = _table(lambda b: 0 if not (b >> 1) & 0x03 else 2 if (b >> 1) & 0x03 == _PERF_RED else 1)
#: 1 for a SpO2 byte that is neither a value nor "no value"; for an HR MSB of 256 or more.
_BAD_SPO2_OF = _table(lambda b: int(_MAX_SPO2 < b != _NO_SPO2))
_HR_HIGH_OF = _table(lambda b: int(b & 0x03 >= 0x02))  # noqa: PLR2004
_HR_MSB_OF = _table(lambda b: b & 0x03)
_HR_LSB_OF = _table(lambda b: b & 0x7F)
_LATER_OK = b"\x01" * (FRAMES_PER_PACKET - 1)  # 24 valid frames without SYNC (`_frame_flags`)


def _flags_table() -> tuple[Quality, ...]:
    """Quality flags for every flag key `status bits | red`."""
    table = []
    for key in range(256):
        flags = Quality.NONE
        for bit, flag in _STATUS_FLAGS:
            if key & bit:
                flags |= flag
        if key & _RED_KEY:
            flags |= Quality.LOW_PERFUSION
        table.append(flags)
    return tuple(table)


_FLAGS = _flags_table()


@functools.cache
def _check_weights() -> npt.NDArray[np.uint8]:
    """A frame (5 bytes) @ this is 0 (uint8) where its checksum holds."""
    import numpy as np  # noqa: PLC0415  (the bulk path only: see the module docstring)

    return np.array([1, 1, 1, 1, 255], dtype=np.uint8)


@functools.cache
def _framing_row() -> npt.NDArray[np.uint8]:
    """`_FRAMING` as an array row (25,)."""
    import numpy as np  # noqa: PLC0415  (the bulk path only: see the module docstring)

    return np.frombuffer(_FRAMING, dtype=np.uint8)


@functools.cache
def _later_frames() -> npt.NDArray[np.intp]:
    """Offsets of frames 2..25 from a packet's start."""
    import numpy as np  # noqa: PLC0415

    return np.arange(FRAME_LEN, PACKET_LEN, FRAME_LEN)


class _NoninBinaryDecoder(RepeatingDecoder):
    """What DF2 and DF7 share: frame search, packet assembly, keys, flags and counters.

    Counters: every byte consumed is either in a decoded packet or counted in
    `bytes_skipped` (stray bytes, frames outside a whole packet, the bytes of a broken one).
    `records` counts the packets decoded; `frames_bad` counts frames rejected where one was
    due (right after a good frame: bad checksum, status bit 7 low) and packets with
    impossible values; `packets_incomplete` counts packets that started (SYNC) but were
    broken by a lost or bad frame.

    Four ways to the same result (the tests hold them to it): while the stream stays in
    step, the bytes after the last packet are the next packets, checked with bytes slices
    when the buffer is short and as a numpy (packets, 25, 5) view when it is long; after a
    break, every offset is checked at once, in Python or with numpy by the same measure.
    """

    serial: ClassVar[SerialSettings] = SerialSettings(baudrate=9600)
    streaming: ClassVar[bool] = True
    # A packet every 333 ms. OpenICE's quiet time is one packet (333 ms), which flaps on
    # Bluetooth SPP links that deliver in bursts; devices.md §6 says ~1 s, three packets.
    silence_timeout_s: ClassVar[float] = 1.0
    _size: ClassVar[int] = PACKET_LEN
    _key_width: ClassVar[int] = _KEY_WIDTH
    _stretches: ClassVar[re.Pattern[bytes]] = stretches(_KEY_WIDTH)
    #: Offset of the STATUS byte in a frame (DF7 0, DF2 1); VALUE is at 3, CHK at 4.
    _status_at: ClassVar[int]

    def __init__(self, *, device: str) -> None:
        super().__init__(device=device)
        self.packets_incomplete = 0
        # The pending bytes start where the last packet ended: the next packet is due there.
        self._in_step = False
        # Hunting state, carried across calls so that chunking never changes the counts:
        # whether a frame was due at the next byte, and how many bytes at the start of the
        # next call still belong to a frame already counted.
        self._aligned = False
        self._carry = 0
        # Whether the last beat's perfusion was red, held between beats so that LOW_PERFUSION
        # does not flicker with the pulse; cleared when there is no tracked pulse (SNSD,
        # SNSA, OOT) and by a green or yellow beat.
        self._red = False

    # --- per format ---

    def _framed(self, buf: bytes, s: int, e: int) -> bool:
        """Whether the whole packets in buf[s:e] have the format's fixed bits: status bit 7,
        SYNC on first frames only (and DF2's start byte)."""
        raise NotImplementedError

    def _frame_flags(self, buf: bytes, pos: int) -> bytes:
        """Per offset from `pos` (len - 4 of them): 1 a valid frame, 3 a valid SYNC frame,
        0 none. In Python, for a short buffer; `_frames` is the same with numpy."""
        raise NotImplementedError

    def _frames(
        self, a: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Which offsets start a valid frame, and which of those carry SYNC (len(a) - 4 each)."""
        raise NotImplementedError

    def _framing_ok(self, f: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
        """Per frame of packets `f` (packets, 25, 5): `_framed`, frame by frame."""
        raise NotImplementedError

    # --- feeding ---

    def _decode(self, data: bytes, clock: Arrivals, out: list[Reading]) -> None:
        buf = self._pending + data if self._pending else data
        n = len(buf)
        pos = 0
        if n >= BULK_BYTES:
            pos = self._decode_bulk(buf, clock, out)
        elif n >= PACKET_LEN:
            if self._in_step:
                while n - pos >= PACKET_LEN and self._whole(buf, pos):
                    pos += PACKET_LEN
                if pos:
                    self._packets(buf, 0, pos // PACKET_LEN, clock, out, bulk=False)
            if n - pos >= PACKET_LEN:
                flags = self._frame_flags(buf, pos)
                starts = _starts(flags, n - pos - MAX_PENDING)
                pos = self._search(buf, pos, starts, lambda: flags, clock, out, bulk=False)
        self._pending = bytes(buf[pos:])

    def _whole(self, buf: bytes, p: int) -> bool:
        """Whether buf[p:] starts with a whole packet (checksums and framing), in Python."""
        e = p + PACKET_LEN
        for b0, b1, b2, b3, ck in zip(
            buf[p:e:FRAME_LEN],
            buf[p + 1 : e : FRAME_LEN],
            buf[p + 2 : e : FRAME_LEN],
            buf[p + 3 : e : FRAME_LEN],
            buf[p + 4 : e : FRAME_LEN],
            strict=True,
        ):
            if (b0 + b1 + b2 + b3) & 0xFF != ck:
                return False
        return self._framed(buf, p, e)

    def _decode_bulk(self, buf: bytes, clock: Arrivals, out: list[Reading]) -> int:
        """`_decode` of a long buffer, with numpy; returns the bytes used."""
        import numpy as np  # noqa: PLC0415

        a = np.frombuffer(buf, dtype=np.uint8)
        n = len(buf)
        pos = 0
        if self._in_step:
            m = n // PACKET_LEN
            e = m * PACKET_LEN
            # Zero where the frame's checksum holds (uint8 arithmetic wraps: CHK is the sum
            # of bytes 0..3 mod 256, and 255 * CHK is -CHK).
            check = a[:e].reshape(-1, FRAME_LEN) @ _check_weights()
            if np.count_nonzero(check) or not self._framed(buf, 0, e):
                ok = (check == 0).reshape(m, FRAMES_PER_PACKET)
                ok &= self._framing_ok(a[:e].reshape(m, FRAMES_PER_PACKET, FRAME_LEN))
                m = int(ok.all(axis=1).argmin())  # the first packet that is not whole
            if m:
                self._packets(buf, 0, m, clock, out, bulk=True)
            pos = m * PACKET_LEN
        if n - pos >= PACKET_LEN:
            valid, sync = self._frames(a[pos:])
            starts = _packet_starts(valid, sync, n - pos - MAX_PENDING).tolist()
            flags_of = lambda: _flag_bytes(valid, sync)  # noqa: E731  (only after a gap)
            pos = self._search(buf, pos, starts, flags_of, clock, out, bulk=True)
        return pos

    def _search(  # noqa: PLR0917
        self,
        buf: bytes,
        pos: int,
        starts: list[int],
        flags_of: Callable[[], bytes],
        clock: Arrivals,
        out: list[Reading],
        *,
        bulk: bool,
    ) -> int:
        """Take the whole packets at `starts` (offsets from `pos`), accounting for the bytes
        between them with `flags_of()` (`_frame_flags`); returns the bytes used.

        A packet is taken at the first offset that starts one (SYNC, then 24 good frames
        without SYNC), which is what a byte-by-byte hunt would find.
        """
        # A packet can start at any offset below `limit`: those are decided now; the rest
        # (less than a packet) waits for more bytes.
        limit = len(buf) - pos - MAX_PENDING
        runs: list[list[int]] = []  # [offset, packets] of back-to-back packets
        flags = b""
        at = 0
        for start in starts:
            if start < at:
                continue  # overlaps the packet just taken (only possible in noise)
            if start > at:
                flags = flags or flags_of()
                self._gap(flags, at, start)
            if runs and start == at:
                runs[-1][1] += 1
            else:
                runs.append([start, 1])
            at = start + PACKET_LEN
            self._aligned = True
            self._carry = 0
        self._in_step = at >= limit
        if not self._in_step:
            self._gap(flags or flags_of(), at, limit)
            at = limit
        for start, count in runs:
            self._packets(buf, pos + start, count, clock, out, bulk=bulk)
        return pos + at

    def _gap(self, frame_flags: bytes, start: int, end: int) -> None:
        """Account for bytes in [start, end) that are in no packet (the rare path)."""
        self.bytes_skipped += end - start
        p = start + self._carry
        while p < end:
            f = frame_flags[p]
            if f:
                # A good frame outside a whole packet; a SYNC one is a packet that broke.
                if f & 2:
                    self.packets_incomplete += 1
                self._aligned = True
                p += FRAME_LEN
            else:
                if self._aligned:
                    self.frames_bad += 1
                    self._aligned = False
                p += 1
        self._carry = p - end

    # --- decoding ---

    def _packets(
        self, buf: bytes, s: int, m: int, clock: Arrivals, out: list[Reading], *, bulk: bool
    ) -> None:
        """Decode the `m` whole packets back to back from buffer offset `s`: their keys from
        byte columns (strided slices), the flag keys only when a status bit calls for it."""
        e = s + m * PACKET_LEN
        status = buf[s + self._status_at : e : FRAME_LEN]
        flag_keys = b""
        if self._red or 1 in status.translate(_MARK_OF):
            if bulk and m >= _BULK_PACKETS:
                flag_keys = self._flag_keys(status, m)
            else:
                flag_keys = self._flag_keys_py(status, m)
        msb = buf[s + _HR_MSB_AT : e : PACKET_LEN]
        lsb = buf[s + _HR_LSB_AT : e : PACKET_LEN]
        spo2 = buf[s + _SPO2_AT : e : PACKET_LEN]
        keys = interleave(
            (msb.translate(_HR_MSB_OF), lsb.translate(_HR_LSB_OF), spo2, flag_keys or bytes(m)), m
        )
        bad = _impossible(msb, lsb, spo2, flag_keys)
        if not bad:
            self._take(buf, s, keys, m, clock, out)
            return
        self.frames_bad += len(bad)
        first = 0
        for j in [*bad, m]:
            if j > first:
                run = keys[first * _KEY_WIDTH : j * _KEY_WIDTH]
                self._take(buf, s + first * PACKET_LEN, run, j - first, clock, out)
            first = j + 1

    def _take(  # noqa: PLR0917
        self, buf: bytes, s: int, keys: bytes, count: int, clock: Arrivals, out: list[Reading]
    ) -> None:
        """`count` packets from buffer offset `s`, with keys `keys`: they count, give their
        pleth and their Readings."""
        e = s + count * PACKET_LEN
        self.records += count
        self._pleth.append(buf[s:e])
        clock.run(s, e, PACKET_LEN)
        self._emit(keys, s, count, clock, out)

    def _flag_keys_py(self, status: bytes, m: int) -> bytes:
        """The flag keys (status flag bits | held red) of `m` packets from their status bytes;
        carries the held perfusion through them."""
        keys = bytearray(m)
        for k in range(m):
            packet = status[k * FRAMES_PER_PACKET : (k + 1) * FRAMES_PER_PACKET]
            bits = 0
            for b in set(packet):
                bits |= b
            bits &= _STATUS_FLAG_BITS
            if bits & _NO_PULSE:
                self._red = False
            else:
                beats = packet.translate(_BEAT_OF).rstrip(b"\x00")
                if beats:
                    self._red = beats[-1] == _PERF_RED
            keys[k] = bits | _RED_KEY if self._red else bits
        return bytes(keys)

    def _flag_keys(self, status: bytes, m: int) -> bytes:
        """`_flag_keys_py` with numpy, for many packets."""
        import numpy as np  # noqa: PLC0415

        s = np.frombuffer(status, dtype=np.uint8).reshape(m, FRAMES_PER_PACKET)
        bits = np.bitwise_or.reduce(s, axis=1) & np.uint8(_STATUS_FLAG_BITS)
        # The perfusion held at each packet's end is set by the last event up to it: a beat
        # (1 green or yellow, 2 red), or the end of a packet without a pulse (3), which
        # comes after that packet's beats.
        events = np.frombuffer(status.translate(_BEAT_OF), dtype=np.uint8).copy()
        events[FRAMES_PER_PACKET - 1 :: FRAMES_PER_PACKET][(bits & _NO_PULSE) != 0] = 3
        numbers = np.arange(1, len(events) + 1)
        last = np.maximum.accumulate(np.where(events != 0, numbers, 0))
        last = last[FRAMES_PER_PACKET - 1 :: FRAMES_PER_PACKET]
        red = np.where(last > 0, events[last - 1] == _PERF_RED, self._red)
        self._red = bool(red[-1])
        keys: bytes = (bits | red.astype(np.uint8)).tobytes()
        return keys

    @staticmethod
    def _values(key: bytes) -> Values:
        msb, lsb, spo2, flag_key = key
        flags = _FLAGS[flag_key]
        if flag_key & _WITHHOLD:
            # The device says there is no patient signal: never report its numbers.
            return None, None, None, flags
        hr = (msb << 7) | lsb
        return None if spo2 == _NO_SPO2 else spo2, None if hr == _NO_HR else hr, None, flags


def _impossible(msb: bytes, lsb: bytes, spo2: bytes, flag_keys: bytes) -> list[int]:
    """The packets (by index) whose HR MSB / LSB and SpO2 bytes cannot be numbers, unless
    their flags withhold the numbers anyway."""
    if 1 not in spo2.translate(_BAD_SPO2_OF) and 1 not in msb.translate(_HR_HIGH_OF):
        return []
    bad = []
    for k, (high, low, sat) in enumerate(zip(msb, lsb, spo2, strict=True)):
        hr = ((high & 0x03) << 7) | (low & 0x7F)
        if ((sat > _MAX_SPO2 and sat != _NO_SPO2) or _MAX_PR < hr < _NO_HR) and not (
            flag_keys and flag_keys[k] & _WITHHOLD
        ):
            bad.append(k)
    return bad


def _starts(flags: bytes, limit: int) -> list[int]:
    """Offsets below `limit` that start a whole packet in `_frame_flags`: SYNC, then 24 good
    frames without it (`_packet_starts`, in Python)."""
    starts = []
    i = flags.find(3, 0, limit)
    while i >= 0:
        if flags[i + FRAME_LEN : i + PACKET_LEN : FRAME_LEN] == _LATER_OK:
            starts.append(i)
        i = flags.find(3, i + 1, limit)
    return starts


def _packet_starts(
    valid: npt.NDArray[np.bool_], sync: npt.NDArray[np.bool_], limit: int
) -> npt.NDArray[np.intp]:
    """Offsets below `limit` that start a whole packet: SYNC, then 24 good frames without it."""
    import numpy as np  # noqa: PLC0415

    first = np.flatnonzero(sync[:limit])
    if not first.size:
        return first
    later = first[:, None] + _later_frames()
    whole = (valid[later] & ~sync[later]).all(axis=1)
    starts: npt.NDArray[np.intp] = first[whole]
    return starts


def _flag_bytes(valid: npt.NDArray[np.bool_], sync: npt.NDArray[np.bool_]) -> bytes:
    """`_frame_flags` from `_frames`: 1 a valid frame, 3 a valid SYNC frame, 0 none."""
    import numpy as np  # noqa: PLC0415

    return (valid.view(np.uint8) + sync.view(np.uint8) * 2).tobytes()


class NoninDf7Decoder(_NoninBinaryDecoder):
    """Decoder for `nonin-df7`: `[STATUS, PLETH_MSB, PLETH_LSB, VALUE, CHK]`, 16-bit pleth."""

    protocol: ClassVar[str] = "nonin-df7"
    _status_at: ClassVar[int] = 0

    def _framed(self, buf: bytes, s: int, e: int) -> bool:
        return buf[s:e:FRAME_LEN].translate(_FRAMING_OF) == _FRAMING * ((e - s) // PACKET_LEN)

    def _frame_flags(self, buf: bytes, pos: int) -> bytes:
        b = buf[pos:]
        flags = bytearray(max(len(b) - 4, 0))
        for i, (status, x1, x2, x3, ck) in enumerate(
            zip(b, b[1:], b[2:], b[3:], b[4:], strict=False)
        ):
            if status >= _BIT7 and (status + x1 + x2 + x3) & 0xFF == ck:
                flags[i] = 3 if status & _SYNC else 1
        return bytes(flags)

    def _frames(
        self, a: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        m = len(a) - 4
        head = a[:m]
        total = head + a[1 : m + 1]  # uint8 arithmetic wraps: the sum & 0xFF
        total += a[2 : m + 2]
        total += a[3 : m + 3]
        valid = total == a[4:]
        valid &= head >= _BIT7
        sync = valid & ((head & _SYNC) != 0)
        return valid, sync

    def _framing_ok(self, f: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
        ok: npt.NDArray[np.bool_] = (f[..., 0] & (_BIT7 | _SYNC)) == _framing_row()
        return ok

    @staticmethod
    def _samples(pleth: bytes) -> tuple[int, ...]:
        # Big-endian 16-bit samples from each frame's bytes 1 and 2, without numpy.
        msb, lsb = pleth[1::FRAME_LEN], pleth[2::FRAME_LEN]
        pairs = bytearray(2 * len(msb))
        pairs[0::2], pairs[1::2] = msb, lsb
        samples = array("H", pairs)
        if sys.byteorder == "little":
            samples.byteswap()
        return tuple(samples)


class NoninDf2Decoder(_NoninBinaryDecoder):
    """Decoder for `nonin-df2`: `[0x01, STATUS, PLETH, VALUE, CHK]`, 8-bit pleth."""

    protocol: ClassVar[str] = "nonin-df2"
    _status_at: ClassVar[int] = 1

    def _framed(self, buf: bytes, s: int, e: int) -> bool:
        m = (e - s) // PACKET_LEN
        return (
            buf[s:e:FRAME_LEN] == _DF2_STARTS * m
            and buf[s + 1 : e : FRAME_LEN].translate(_FRAMING_OF) == _FRAMING * m
        )

    def _frame_flags(self, buf: bytes, pos: int) -> bytes:
        b = buf[pos:]
        flags = bytearray(max(len(b) - 4, 0))
        for i, (start, status, x2, x3, ck) in enumerate(
            zip(b, b[1:], b[2:], b[3:], b[4:], strict=False)
        ):
            if start == 1 and status >= _BIT7 and (1 + status + x2 + x3) & 0xFF == ck:
                flags[i] = 3 if status & _SYNC else 1
        return bytes(flags)

    def _frames(
        self, a: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        m = len(a) - 4
        head = a[:m]
        status = a[1 : m + 1]
        total = head + status
        total += a[2 : m + 2]
        total += a[3 : m + 3]
        valid = total == a[4:]
        valid &= head == 1
        valid &= status >= _BIT7
        sync = valid & ((status & _SYNC) != 0)
        return valid, sync

    def _framing_ok(self, f: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
        ok: npt.NDArray[np.bool_] = (f[..., 0] == 1) & (
            (f[..., 1] & (_BIT7 | _SYNC)) == _framing_row()
        )
        return ok

    @staticmethod
    def _samples(pleth: bytes) -> tuple[int, ...]:
        return tuple(pleth[2::FRAME_LEN])


# --- ASCII -------------------------------------------------------------------------------

_ASCII_START = re.compile(rb"(?:\d\d:\d\d:\d\d )?SPO2=")
_MARKERS = b"*FB"  # event marker, fast values, breath detected (§3.1): not part of a value


class _BadField(ValueError):
    """A field that is present but cannot be a real value."""


def _ascii_value(raw: bytes, maximum: int) -> int | None:
    raw = raw.rstrip(_MARKERS)
    if raw and raw.strip(b"-") == b"":
        return None
    if not raw.isdigit():
        raise _BadField(raw)
    value = int(raw)
    if value > maximum:
        raise _BadField(raw)
    return value


def _token(line: bytes, i: int) -> bytes:
    j = line.find(b" ", i)
    return line[i:] if j < 0 else line[i:j]


class NoninAsciiDecoder(LineDecoder):
    """Decoder for `nonin-ascii`: one `SPO2=XXX HR=YYY` line a second, CR LF."""

    protocol: ClassVar[str] = "nonin-ascii"
    # 8N1; the 7500FO and Avant 9600 send 8N2, which an 8N1 receiver reads the same (the
    # second stop bit looks like an idle line). Handhelds send a 9th bit that is always mark
    # in real-time mode, which also reads as 8N1 (§3.1).
    serial: ClassVar[SerialSettings] = SerialSettings(baudrate=9600)
    streaming: ClassVar[bool] = True
    # One line a second, as Masimo: 2.5x the period leaves room for jitter.
    silence_timeout_s: ClassVar[float] = 2.5

    max_line: ClassVar[int] = MAX_LINE

    def _line(self, line: bytes, t: float) -> Reading | None:
        start = _ASCII_START.search(line)
        if start is None:
            # The power-up header (format, time, date), a partial first line, or noise.
            self.bytes_skipped += len(line) + 1
            return None
        if start.start():
            self.bytes_skipped += start.start()
        hr_at = line.find(b" HR=", start.end())
        if hr_at < 0:
            self.frames_bad += 1
            return None
        try:
            spo2 = _ascii_value(_token(line, start.end()), _MAX_SPO2)
            pr = _ascii_value(_token(line, hr_at + 4), _MAX_PR)
        except ValueError:
            self.frames_bad += 1
            return None
        self.records += 1
        # `HH:MM:SS` has no date, so the device time is not kept (Reading wants a datetime).
        return Reading(t=t, device=self.device, spo2=spo2, pr=pr)
