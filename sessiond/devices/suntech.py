"""SunTech Advantage OEM NIBP module (binary, 9600 8N1): sans-I/O both ways.

Host → module: `:` (0x3A), the command bytes, and a checksum that makes the whole frame sum
to 0 mod 256 (no length byte); built by `command()` and the named functions below.
Module → host: `>` (0x3E), LEN, data, checksum, where LEN is the length of the whole frame
(from `>` to the checksum) and also names the reply (reference/devices.md §4.1):

| LEN  | reply                                                              | here           |
|------|--------------------------------------------------------------------|----------------|
| 0x04 | acknowledgement, one ASCII code (`O` received, `K` completed, ...) | `Ack`          |
| 0x05 | cuff pressure, int16 LE mmHg                                       | `CuffPressure` |
| 0x18 | BP data: SYS [2..3], DIA [4..5], PR [16], MAP [18..19], error [20] | `BpResult`     |
| 0x43 | return string (module version: "LX" Advantage, "SB" Advantage+)    | `ReturnString` |

`feed()` returns what the monitor needs: one `Reading` per BP data frame. Everything the module
says, the BP data included, also becomes a small immutable reply event, kept in order for the
link's command/response state machine, which takes them with `take_replies()` after each
`feed()` (the h11 / wsproto pattern: bytes in, then drain the events). The replies wait in a
bounded deque, so a caller that never drains them (replay) does not grow memory.

Bad input is counted, never raised: a frame whose checksum fails counts in `frames_bad` and
the hunt resumes at the byte after its `>`; `bytes_skipped` counts every byte that is not
part of a checksummed frame (so fed = skipped + framed + pending). A frame cut short (a lost
byte, or noise that looks like a frame start) is given up as soon as a whole frame follows it,
or by `discard_partial()` when a command goes out: a reply is decoded when its last byte
arrives, never later under a newer time. A checksummed BP data frame whose values cannot be a
blood pressure is a failed measurement: counted in `frames_bad`, a `BpResult` with
`ERROR_IMPOSSIBLE` and a `Reading` without values (DESIGN §5).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import ClassVar

from sessiond.devices.decoder import DecoderCounters, SerialSettings
from sessiond.model import Quality, Reading

HOST_SYNC = 0x3A  # ':'
MODULE_SYNC = 0x3E  # '>'

LEN_ACK = 0x04
LEN_CUFF_PRESSURE = 0x05
LEN_BP_DATA = 0x18
LEN_RETURN_STRING = 0x43
#: The longest reply (ak-git caps its buffer here too); a partial frame kept between calls is
#: shorter, so this also bounds the unparsed bytes a decoder holds.
MAX_FRAME = LEN_RETURN_STRING
_KNOWN_LENGTHS = frozenset({LEN_ACK, LEN_CUFF_PRESSURE, LEN_BP_DATA, LEN_RETURN_STRING})

#: Replies kept for the link; only a caller that never drains them (replay) reaches this.
MAX_REPLIES = 256

#: Error / status byte of the BP data (Appciton `SuntechProvider`; devices.md §4.1).
ERROR_CODES: dict[int, str] = {
    0x01: "weak or no oscillometric signal",
    0x02: "erratic signal (artifact, patient movement)",
    0x03: "blood pressure out of range",
    0x04: "measurement timeout",
    0x55: "pneumatic blockage",
    0x56: "measurement aborted by user",
    0x57: "inflate timeout, air leak or loose cuff",
    0x58: "safety timeout",
    0x59: "cuff overpressure",
    0x5A: "power supply out of range or hardware failure",
    0x5B: "permission problem (safety override, auto-zero out of range)",
    0x61: "transducer out of range",
    0x63: "EEPROM calibration failure",
}

#: Error codes with a quality meaning (the others say only that no value was measured).
_ERROR_FLAGS: dict[int, Quality] = {0x01: Quality.LOW_SIGNAL, 0x02: Quality.ARTIFACT}

#: `BpResult.error` of a checksummed result whose values cannot be a blood pressure. Not a
#: byte, so never a code the module itself sends.
ERROR_IMPOSSIBLE = 0x100
IMPOSSIBLE_TEXT = "impossible values (not a blood pressure)"

# A result outside these is not a measurement, whatever its checksum says. The module's own
# limits are narrower (its cuff is released well before 300 mmHg).
_MIN_MMHG = 1
_MAX_MMHG = 300
_MAX_PR = 254  # PR is one byte; 0 and 255 read as "no pulse rate" [I]


def error_text(code: int) -> str:
    """What a BP data error code means (`unknown error 0x..` for codes not in the table)."""
    if code == ERROR_IMPOSSIBLE:
        return IMPOSSIBLE_TEXT
    return ERROR_CODES.get(code, f"unknown error 0x{code:02X}")


def possible_bp(sys: int, dia: int, mean: int) -> bool:
    """Whether SYS/DIA/MAP can be a blood pressure: in range, DIA below SYS, MAP between."""
    return _MIN_MMHG <= dia < sys <= _MAX_MMHG and dia <= mean <= sys


# --------------------------------------------------------------------------------------------
# Commands (host → module)
# --------------------------------------------------------------------------------------------


def checksum(data: bytes) -> int:
    """The byte that makes `data` plus it sum to 0 mod 256 (2's complement of the sum)."""
    return -sum(data) & 0xFF


def command(body: bytes) -> bytes:
    """A host → module frame: `:`, `body`, checksum."""
    frame = bytes((HOST_SYNC,)) + body
    return frame + bytes((checksum(frame),))


def start_measurement_command() -> bytes:
    """`3A 20 A6`: start an adult BP measurement (answered `O`, then `K` when done)."""
    return command(b"\x20")


def abort_command() -> bytes:
    """`3A 79 01 00 4C`: abort the measurement and deflate (answered `A`)."""
    return command(b"\x79\x01\x00")


def read_result_command() -> bytes:
    """`3A 79 03 00 4A`: get the BP data of the last measurement (answered by 0x18)."""
    return command(b"\x79\x03\x00")


def cuff_pressure_command() -> bytes:
    """`3A 79 05 00 48`: get the cuff pressure (answered by 0x05; poll while measuring)."""
    return command(b"\x79\x05\x00")


# --------------------------------------------------------------------------------------------
# Replies (module → host)
# --------------------------------------------------------------------------------------------


class AckCode(enum.StrEnum):
    """The one-letter code of an acknowledgement frame."""

    RECEIVED = "O"
    COMPLETED = "K"
    ABORTED = "A"
    BUSY = "B"
    ERROR = "E"
    UNDEFINED = "N"
    UNRECOGNIZABLE = "D"
    SLEEP = "S"
    TIMEOUT = "T"


_ACK_CODES: dict[int, AckCode] = {ord(code.value): code for code in AckCode}


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """An acknowledgement: `O` command received, `K` completed, `A` aborted, `E` error ..."""

    t: float
    code: AckCode


@dataclass(frozen=True, slots=True, kw_only=True)
class CuffPressure:
    """The cuff pressure now, in mmHg."""

    t: float
    mmhg: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BpResult:
    """The BP data frame: the values (None when the measurement failed) and its error code."""

    t: float
    sys: int | None
    dia: int | None
    map: int | None
    pr: int | None
    #: 0 for a good measurement, else a code of `ERROR_CODES` or `ERROR_IMPOSSIBLE`.
    error: int

    @property
    def ok(self) -> bool:
        return self.error == 0

    @property
    def error_text(self) -> str:
        return "" if self.error == 0 else error_text(self.error)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReturnString:
    """A return string (module version / identification), trailing NULs and blanks removed."""

    t: float
    text: str


Reply = Ack | CuffPressure | BpResult | ReturnString


class SuntechAdvantageDecoder(DecoderCounters):
    """Decoder for `suntech-advantage`: BP data → `Reading`; every reply → `take_replies()`."""

    protocol: ClassVar[str] = "suntech-advantage"
    serial: ClassVar[SerialSettings] = SerialSettings(baudrate=9600)
    #: Silent between measurements: it speaks only when spoken to (and `K` when done).
    streaming: ClassVar[bool] = False
    # Not a silence watchdog (silence is normal here): a command unanswered this long means the
    # link is lost (DESIGN §5 `device_lost`). Only meaningful while a reply is awaited.
    silence_timeout_s: ClassVar[float] = 5.0

    def __init__(self, *, device: str) -> None:
        super().__init__(device=device)  # `records`: BP data frames (a Reading, values or not)
        self._replies: deque[Reply] = deque(maxlen=MAX_REPLIES)

    def take_replies(self) -> list[Reply]:
        """The replies decoded since the last call, oldest first; the queue is left empty."""
        replies = list(self._replies)
        self._replies.clear()
        return replies

    def feed(self, data: bytes, t: float) -> list[Reading]:
        buf = self._pending + data if self._pending else data
        n = len(buf)
        out: list[Reading] = []
        i = 0
        while i < n:
            s = buf.find(MODULE_SYNC, i)
            if s < 0:
                self.bytes_skipped += n - i
                i = n
                break
            self.bytes_skipped += s - i
            if s + 1 == n:
                i = s  # `>` alone: its length byte is still to come
                break
            size = buf[s + 1]
            if size not in _KNOWN_LENGTHS:
                self.bytes_skipped += 1  # a `>` in noise (or a reply we do not know)
                i = s + 1
                continue
            end = s + size
            if end > n:
                after = _whole_frame_after(buf, s)
                if after is None:
                    i = s  # a partial frame, kept for the next call (shorter than MAX_FRAME)
                    break
                # A whole frame inside this one's length: this one was cut short (or was noise).
                # Waiting for its length to pass would hold that reply back, to decode it later
                # under a newer time.
                self.frames_bad += 1
                self.bytes_skipped += after - s
                i = after
                continue
            if sum(buf[s:end]) & 0xFF:
                # Bad checksum: the length may be noise too, so hunt again from the next byte.
                self.frames_bad += 1
                self.bytes_skipped += 1
                i = s + 1
                continue
            self._frame(buf[s:end], t, out)
            i = end
        self._pending = bytes(buf[i:])
        return out

    def discard_partial(self) -> int:
        """Give up an unfinished frame; returns how many bytes went (counted as skipped).

        For the link when a command goes out or goes unanswered: whatever the module was saying
        before is over, and its rest must not be taken for the answer to come.
        """
        dropped = len(self._pending)
        if dropped:
            self.bytes_skipped += dropped
            if dropped > 1:
                self.frames_bad += 1  # `>` and a known length: a frame cut short
            self._pending = b""
        return dropped

    def _frame(self, frame: bytes, t: float, out: list[Reading]) -> None:
        """Decode one checksummed frame; a frame with impossible fields counts as bad."""
        size = frame[1]
        if size == LEN_ACK:
            code = _ACK_CODES.get(frame[2])
            if code is None:
                self.frames_bad += 1
                return
            self._replies.append(Ack(t=t, code=code))
        elif size == LEN_CUFF_PRESSURE:
            mmhg = int.from_bytes(frame[2:4], "little", signed=True)
            self._replies.append(CuffPressure(t=t, mmhg=mmhg))
        elif size == LEN_BP_DATA:
            self._bp_data(frame, t, out)
        else:  # LEN_RETURN_STRING
            text = frame[2:-1].decode("ascii", "replace").rstrip("\0 ")
            self._replies.append(ReturnString(t=t, text=text))

    def _bp_data(self, frame: bytes, t: float, out: list[Reading]) -> None:
        error = frame[20]
        if error:
            # A failed measurement: no numbers, whatever the value fields hold.
            self.records += 1
            self._replies.append(BpResult(t=t, sys=None, dia=None, map=None, pr=None, error=error))
            flags = _ERROR_FLAGS.get(error, Quality.NONE)
            out.append(Reading(t=t, device=self.device, flags=flags))
            return
        sys = int.from_bytes(frame[2:4], "little", signed=True)
        dia = int.from_bytes(frame[4:6], "little", signed=True)
        mean = int.from_bytes(frame[18:20], "little", signed=True)
        if not possible_bp(sys, dia, mean):
            # Not a reading, but still the answer to "get BP data" (the link waits for it) and a
            # failed measurement for the monitor (`nibp_error`), as an error code would be.
            self.frames_bad += 1
            self._replies.append(
                BpResult(t=t, sys=None, dia=None, map=None, pr=None, error=ERROR_IMPOSSIBLE)
            )
            out.append(Reading(t=t, device=self.device))
            return
        raw_pr = frame[16]
        pr = raw_pr if 0 < raw_pr <= _MAX_PR else None
        self.records += 1
        self._replies.append(BpResult(t=t, sys=sys, dia=dia, map=mean, pr=pr, error=0))
        out.append(Reading(t=t, device=self.device, sys=sys, dia=dia, map=mean, pr=pr))


def _whole_frame_after(buf: bytes, start: int) -> int | None:
    """Where the first complete, checksummed frame after `buf[start]` begins, if any."""
    n = len(buf)
    s = buf.find(MODULE_SYNC, start + 1)
    while 0 <= s < n - 1:
        end = s + buf[s + 1]
        if buf[s + 1] in _KNOWN_LENGTHS and end <= n and not sum(buf[s:end]) & 0xFF:
            return s
        s = buf.find(MODULE_SYNC, s + 1)
    return None
