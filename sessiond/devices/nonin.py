"""Nonin oximeters: binary Data Formats 7 and 2 (75 frames/s) and the ASCII output (1 line/s).

Binary (reference/devices.md §3.2): 5-byte checksummed frames, 25 to a packet, 3 packets a
second; the first frame of a packet has the SYNC status bit. Each frame carries one status
byte and one pleth sample; the packet's 25 VALUE bytes spell out HR, SpO2 and the rest. One
`Reading` is made per packet, with the packet's 25 pleth samples and the status bits of all
its frames. Work is done per `feed` call, not per frame: packets in step are checked as a
numpy (packets, 25, 5) view of the buffer, and after a break a numpy pass checks the status
bit and checksum at every offset at once to find the next SYNC followed by 24 good frames.

ASCII (§3.1): `SPO2=097 HR=072` lines, optionally after `HH:MM:SS `, with `*`, `F` or `B`
markers; dashes are "no value".
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from sessiond.devices.decoder import Arrivals, DecoderCounters, SerialSettings, Timed
from sessiond.devices.lines import LineDecoder
from sessiond.model import Quality, Reading

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

FRAME_LEN = 5
FRAMES_PER_PACKET = 25
PACKET_LEN = FRAME_LEN * FRAMES_PER_PACKET
#: Unparsed binary bytes kept between calls. Every offset that could still start a packet is
#: less than a packet from the end, so this also caps the buffer: noise never grows it.
MAX_PENDING = PACKET_LEN - 1
#: An ASCII line is ~30 characters; a line longer than this without a terminator is noise.
MAX_LINE = 256

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
# may hold no beat: the last beat's perfusion is held until the next beat (see _reading).
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
_RED_KEY = 0x01  # held red perfusion, in a flag-table key (status bits never use bit 0 there)

# VALUE bytes 0, 1, 2 of a packet (§3.2): HR MSB, HR LSB, SpO2 — the recording values, not
# the "-D" display values (8, 19, 20) that hold the last number for 10 s after the finger
# is removed, while the recording values switch to "no value" at once.
_NO_SPO2 = 127
_NO_HR = 511
_MAX_SPO2 = 100
#: Nonin specifies 18-321 bpm; a number above that is not a pulse rate. [I]: from Nonin spec
#: sheets, not yet in devices.md.
_MAX_PR = 321

_LATER_FRAMES = np.arange(FRAME_LEN, PACKET_LEN, FRAME_LEN)  # frames 2..25 of a packet
#: Where the first packets of a run in step end (beyond `_MANY`, computed).
_MANY = 64
#: Packets decoded together by numpy from this many (fewer: one by one, which costs less).
_VECTOR_PACKETS = 64
_PACKET_ENDS = np.arange(PACKET_LEN, (_MANY + 1) * PACKET_LEN, PACKET_LEN)
_PACKET_LEN_STEPS = np.arange(0, 1 << 20, PACKET_LEN)  # offsets of up to 128 MiB of packets
_PACKET_BYTES = np.arange(PACKET_LEN)
#: SYNC on the first frame of a packet only, as a row and as bytes.
_SYNC_ROW = np.array([_SYNC] + [0] * (FRAMES_PER_PACKET - 1), dtype=np.uint8)
_SYNC_PATTERN = _SYNC_ROW.tobytes()
_DF2_STARTS = b"\x01" * FRAMES_PER_PACKET
# bytes.translate tables: a status byte to its SYNC bit, and to its perfusion code.
_SYNC_OF = bytes(b & _SYNC for b in range(256))
_PERFUSION_OF = bytes((b >> 1) & 0x03 for b in range(256))


def _flag_table() -> tuple[tuple[Quality, bool], ...]:
    """Quality flags and 'withhold the numbers' for every key `status bits | red`."""
    table = []
    for key in range(256):
        flags = Quality.NONE
        for bit, flag in _STATUS_FLAGS:
            if key & bit:
                flags |= flag
        if key & _RED_KEY:
            flags |= Quality.LOW_PERFUSION
        table.append((flags, bool(key & _WITHHOLD)))
    return tuple(table)


_FLAG_TABLE = _flag_table()
_FLAGS_ONLY = tuple(flags for flags, _ in _FLAG_TABLE)


class _NoninBinaryDecoder(DecoderCounters):
    """What DF2 and DF7 share: frame search, packet assembly, values, flags and counters.

    Counters: every byte consumed is either in a decoded packet or counted in
    `bytes_skipped` (stray bytes, frames outside a whole packet, the bytes of a broken one).
    `frames_bad` counts frames rejected where one was due (right after a good frame: bad
    checksum, status bit 7 low) and packets with impossible values; `packets_incomplete`
    counts packets that started (SYNC) but were broken by a lost or bad frame.

    Three ways to the same result (the tests hold them to it): while the stream stays in
    step, the bytes after the last packet are the next packet, checked with bytes slices when
    only one is there and as a numpy (packets, 25, 5) view when there are more; after a
    break, every offset is checked at once to find the next whole packet.
    """

    serial: ClassVar[SerialSettings] = SerialSettings(baudrate=9600)
    streaming: ClassVar[bool] = True
    # A packet every 333 ms. OpenICE's quiet time is one packet (333 ms), which flaps on
    # Bluetooth SPP links that deliver in bursts; devices.md §6 says ~1 s, three packets.
    silence_timeout_s: ClassVar[float] = 1.0
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
        # The last beat's perfusion code, held between beats so that LOW_PERFUSION does not
        # flicker with the pulse; cleared when there is no tracked pulse (SNSD, SNSA, OOT).
        self._perfusion = 0

    # --- per format ---

    def _frames(
        self, a: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Which offsets start a valid frame, and which of those carry SYNC (len(a) - 4 each)."""
        raise NotImplementedError

    def _framing_ok(self, f: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
        """Per frame of `f` (..., 5): the format's fixed bytes are right (status bit 7 ...)."""
        raise NotImplementedError

    def _pleth_rows(self, f: npt.NDArray[np.uint8]) -> list[tuple[int, ...]]:
        """The pleth samples of packets `f` (packets, 25, 5)."""
        raise NotImplementedError

    def _pleth_bytes(self, buf: bytes) -> tuple[int, ...] | None:
        """The pleth samples of the packet at the start of `buf`, None if its framing is wrong."""
        raise NotImplementedError

    # --- feeding ---

    def feed(self, data: bytes, t: float) -> list[Reading]:
        out: list[Reading] = []
        self._feed(data, Arrivals(t), out)
        return out

    def feed_timed(
        self, data: bytes, ends: npt.NDArray[np.int64], times: npt.NDArray[np.float64]
    ) -> Timed:
        out: list[Reading] = []
        clock = Arrivals(0.0, len(self._pending), ends, times)
        self._feed(data, clock, out)
        return clock.timed(out)

    def _feed(self, data: bytes, clock: Arrivals, out: list[Reading]) -> None:
        buf = self._pending + data if self._pending else data
        n = len(buf)
        if n < PACKET_LEN:
            self._pending = bytes(buf)
            return
        pos = 0
        if self._in_step:
            if n < 2 * PACKET_LEN:
                pos = self._one_packet(buf, clock, out)
            else:
                pos = self._run(np.frombuffer(buf, dtype=np.uint8), clock, out)
        if n - pos >= PACKET_LEN:
            pos = self._search(buf, pos, clock, out)
        self._pending = bytes(buf[pos:])

    def _one_packet(self, buf: bytes, clock: Arrivals, out: list[Reading]) -> int:
        """The packet at the start of `buf` with bytes slices; bytes used (0 or a packet)."""
        cks = buf[4:PACKET_LEN:FRAME_LEN]
        for b0, b1, b2, b3, ck in zip(
            buf[0:PACKET_LEN:FRAME_LEN],
            buf[1:PACKET_LEN:FRAME_LEN],
            buf[2:PACKET_LEN:FRAME_LEN],
            buf[3:PACKET_LEN:FRAME_LEN],
            cks,
            strict=True,
        ):
            if (b0 + b1 + b2 + b3) & 0xFF != ck:
                return 0
        status = buf[self._status_at : PACKET_LEN : FRAME_LEN]
        if status.translate(_SYNC_OF) != _SYNC_PATTERN:
            return 0
        pleth = self._pleth_bytes(buf)  # also checks bit 7 and the DF2 start byte
        if pleth is None:
            return 0
        bits = 0
        for s in set(status):
            bits |= s
        beats = status.translate(_PERFUSION_OF).rstrip(b"\x00")
        beat = beats[-1] if beats else 0
        t = clock.t if clock.ends_array is None else -1.0
        reading = self._reading(bits & _STATUS_FLAG_BITS, beat, buf[3:14:FRAME_LEN], pleth, t)
        if reading is not None:
            if clock.ends_array is not None:
                reading.t = clock.at(PACKET_LEN)
            out.append(reading)
        return PACKET_LEN

    def _run(self, a: npt.NDArray[np.uint8], clock: Arrivals, out: list[Reading]) -> int:
        """The whole packets in step from the start of `a`, as one array; bytes used."""
        m = len(a) // PACKET_LEN
        f = a[: m * PACKET_LEN].reshape(m, FRAMES_PER_PACKET, FRAME_LEN)
        ok = self._frames_ok(f)
        ok &= (f[:, :, self._status_at] & _SYNC) == _SYNC_ROW
        whole = ok.all(axis=1)
        run = m if whole.all() else int(whole.argmin())
        if run:
            ends = _PACKET_ENDS[:run] if run < _MANY else _PACKET_LEN_STEPS[:run] + PACKET_LEN
            self._packets(f[:run], ends, clock, out)
        return run * PACKET_LEN

    def _frames_ok(self, f: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
        total = f[..., 0] + f[..., 1]  # uint8 arithmetic wraps: the sum & 0xFF
        total += f[..., 2]
        total += f[..., 3]
        ok: npt.NDArray[np.bool_] = total == f[..., 4]
        ok &= self._framing_ok(f)
        return ok

    def _search(self, buf: bytes, pos: int, clock: Arrivals, out: list[Reading]) -> int:
        """Find whole packets at any offset from `pos`; account for the bytes between them.

        A packet is taken at the first offset that starts one (SYNC, then 24 good frames
        without SYNC), which is what a byte-by-byte hunt would find; returns bytes used.
        """
        a = np.frombuffer(buf, dtype=np.uint8)[pos:]
        valid, sync = self._frames(a)
        # A packet can start at any offset below `limit`: those are decided now; the rest
        # (less than a packet) waits for more bytes.
        limit = len(a) - MAX_PENDING
        chosen: list[int] = []
        at = 0
        frame_flags = b""
        for start in _packet_starts(valid, sync, limit).tolist():
            if start < at:
                continue  # overlaps the packet just taken (only possible in noise)
            if start > at:
                frame_flags = frame_flags or _flag_bytes(valid, sync)
                self._gap(frame_flags, at, start)
            chosen.append(start)
            at = start + PACKET_LEN
            self._aligned = True
            self._carry = 0
        self._in_step = at >= limit
        if not self._in_step:
            frame_flags = frame_flags or _flag_bytes(valid, sync)
            self._gap(frame_flags, at, limit)
            at = limit
        if chosen:
            starts = np.array(chosen, dtype=np.intp)
            base = starts[:, None] + _PACKET_BYTES
            f = a[base].reshape(-1, FRAMES_PER_PACKET, FRAME_LEN)
            self._packets(f, pos + starts + PACKET_LEN, clock, out)
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
        self,
        f: npt.NDArray[np.uint8],
        ends: npt.NDArray[np.intp],
        clock: Arrivals,
        out: list[Reading],
    ) -> None:
        """Decode packets `f` (packets, 25, 5), all of whose frames are valid, that end at
        buffer offsets `ends`."""
        n = len(f)
        status = f[:, :, self._status_at]
        bits = np.bitwise_or.reduce(status, axis=1) & _STATUS_FLAG_BITS
        # The last beat's perfusion in each packet (0 when the packet holds no beat).
        perf = (status >> 1) & 0x03
        beat = perf != 0
        last = FRAMES_PER_PACKET - 1 - beat[:, ::-1].argmax(axis=1)
        beats = np.where(beat.any(axis=1), perf[np.arange(n), last], 0).astype(np.int64)
        times, pieces = clock.stamp(ends)
        if n < _VECTOR_PACKETS:
            # A few packets (what a link reads): numpy's cost per call is more than a loop's.
            rows = zip(bits.tolist(), beats.tolist(), f[:, :3, 3].tolist(),
                       self._pleth_rows(f), times, strict=True)  # fmt: skip
            for k, (b, p, v, pleth, t) in enumerate(rows):
                r = self._reading(b, p, v, pleth, t)
                if r is not None:
                    out.append(r)
                    if pieces:
                        clock.pieces.append(pieces[k])
            return
        # The perfusion held from packet to packet (see `_reading`): set by a beat, cleared
        # without a tracked pulse, else carried; carried in from the last call.
        event = np.where((bits & _NO_PULSE) != 0, 0, np.where(beats != 0, beats, -1))
        setter = np.maximum.accumulate(np.where(event >= 0, np.arange(n), -1))
        held = np.where(setter >= 0, event[np.maximum(setter, 0)], self._perfusion)
        self._perfusion = int(held[-1])
        keys = (bits | np.where(held == _PERF_RED, _RED_KEY, 0)).tolist()
        withhold = (bits & _WITHHOLD) != 0
        hr = ((f[:, 0, 3].astype(np.int64) & 0x03) << 7) | (f[:, 1, 3] & 0x7F)
        spo2 = f[:, 2, 3].astype(np.int64)
        bad = ~withhold & (
            ((spo2 > _MAX_SPO2) & (spo2 != _NO_SPO2)) | ((hr > _MAX_PR) & (hr < _NO_HR))
        )
        spo2 = np.where(withhold | (spo2 == _NO_SPO2), -1, spo2)
        hr = np.where(withhold | (hr == _NO_HR), -1, hr)
        bad_count = int(bad.sum())
        self.frames_bad += bad_count
        self.records += n - bad_count
        flag_table = _FLAGS_ONLY
        device = self.device
        packets = zip(
            bad.tolist(), keys, spo2.tolist(), hr.tolist(), self._pleth_rows(f), times,
            strict=True,
        )  # fmt: skip
        for k, (is_bad, key, s, p, pleth, t) in enumerate(packets):
            if is_bad:
                continue
            out.append(
                Reading(
                    t=t,
                    device=device,
                    spo2=None if s < 0 else s,
                    pr=None if p < 0 else p,
                    pleth=pleth,
                    flags=flag_table[key],
                )
            )
            if pieces:
                clock.pieces.append(pieces[k])

    def _reading(
        self, bits: int, beat: int, values: Sequence[int], pleth: tuple[int, ...], t: float
    ) -> Reading | None:
        """One packet's reading from its status bits (OR of all frames) and VALUE bytes 0..2."""
        if bits & _NO_PULSE:
            self._perfusion = 0
        elif beat:
            self._perfusion = beat
        flags, withhold = _FLAG_TABLE[bits | _RED_KEY if self._perfusion == _PERF_RED else bits]
        spo2: int | None
        pr: int | None
        if withhold:
            # The device says there is no patient signal: never report its numbers.
            spo2 = pr = None
        else:
            msb, lsb, spo2_raw = values
            hr = ((msb & 0x03) << 7) | (lsb & 0x7F)
            if (spo2_raw > _MAX_SPO2 and spo2_raw != _NO_SPO2) or _MAX_PR < hr < _NO_HR:
                self.frames_bad += 1
                return None
            spo2 = None if spo2_raw == _NO_SPO2 else spo2_raw
            pr = None if hr == _NO_HR else hr
        self.records += 1
        return Reading(t=t, device=self.device, spo2=spo2, pr=pr, pleth=pleth, flags=flags)


def _packet_starts(
    valid: npt.NDArray[np.bool_], sync: npt.NDArray[np.bool_], limit: int
) -> npt.NDArray[np.intp]:
    """Offsets below `limit` that start a whole packet: SYNC, then 24 good frames without it."""
    first = np.flatnonzero(sync[:limit])
    if not first.size:
        return first
    later = first[:, None] + _LATER_FRAMES
    whole = (valid[later] & ~sync[later]).all(axis=1)
    starts: npt.NDArray[np.intp] = first[whole]
    return starts


def _flag_bytes(valid: npt.NDArray[np.bool_], sync: npt.NDArray[np.bool_]) -> bytes:
    """Per offset: 1 a valid frame, 3 a valid SYNC frame, 0 none (fast to index in a loop)."""
    return (valid.view(np.uint8) + sync.view(np.uint8) * 2).tobytes()


class NoninDf7Decoder(_NoninBinaryDecoder):
    """Decoder for `nonin-df7`: `[STATUS, PLETH_MSB, PLETH_LSB, VALUE, CHK]`, 16-bit pleth."""

    protocol: ClassVar[str] = "nonin-df7"
    _status_at: ClassVar[int] = 0

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
        ok: npt.NDArray[np.bool_] = f[..., 0] >= _BIT7
        return ok

    def _pleth_rows(self, f: npt.NDArray[np.uint8]) -> list[tuple[int, ...]]:
        pleth = (f[:, :, 1].astype(np.uint16) << 8) | f[:, :, 2]
        return list(map(tuple, pleth.tolist()))

    def _pleth_bytes(self, buf: bytes) -> tuple[int, ...] | None:
        if min(buf[0:PACKET_LEN:FRAME_LEN]) < _BIT7:
            return None
        return tuple(
            (msb << 8) | lsb
            for msb, lsb in zip(
                buf[1:PACKET_LEN:FRAME_LEN], buf[2:PACKET_LEN:FRAME_LEN], strict=True
            )
        )


class NoninDf2Decoder(_NoninBinaryDecoder):
    """Decoder for `nonin-df2`: `[0x01, STATUS, PLETH, VALUE, CHK]`, 8-bit pleth."""

    protocol: ClassVar[str] = "nonin-df2"
    _status_at: ClassVar[int] = 1

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
        ok: npt.NDArray[np.bool_] = (f[..., 0] == 1) & (f[..., 1] >= _BIT7)
        return ok

    def _pleth_rows(self, f: npt.NDArray[np.uint8]) -> list[tuple[int, ...]]:
        return list(map(tuple, f[:, :, 2].tolist()))

    def _pleth_bytes(self, buf: bytes) -> tuple[int, ...] | None:
        if buf[0:PACKET_LEN:FRAME_LEN] != _DF2_STARTS or min(buf[1:PACKET_LEN:FRAME_LEN]) < _BIT7:
            return None
        return tuple(buf[2:PACKET_LEN:FRAME_LEN])


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
