"""A SunTech Advantage OEM NIBP module: answers the host's commands (reference/devices.md §4.1).

Sans-I/O: `receive(bytes, t)` returns the replies to send at once; the one unsolicited reply,
`K` when a measurement completes, is due at `next_due()` and taken with `advance(t)`.

The flow a host drives: start `3A 20 A6` → `O`; the cuff inflates and deflates (polled with
`3A 79 05 00 48` → 0x05 frames) for ~25-45 s; `K`; get BP data `3A 79 03 00 4A` → the 0x18
frame with SYS/DIA/PR/MAP and the error byte. A start while measuring → `B`; abort
`3A 79 01 00 4C` → `A` (and the BP data then says 0x56, aborted). The measured values are the
patient's at mid-deflation plus a little measurement scatter. A scenario's `bp_failure`
events make measurements fail: an error code in the BP data, no answer to the start, or an
`O` with no `K` ever after.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sessiond.devices.suntech import (
    HOST_SYNC,
    LEN_ACK,
    LEN_BP_DATA,
    LEN_CUFF_PRESSURE,
    LEN_RETURN_STRING,
    MODULE_SYNC,
    AckCode,
    checksum,
)
from sessiond.sim.physiology import mean_arterial

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sessiond.sim.scenario import BpFailure

#: The version string ("LX" = Advantage).
VERSION = "LX"
#: Error code in the BP data after an abort.
ERROR_ABORTED = 0x56

# The cuff: inflate to well above systolic, deflate in steps through the oscillations,
# then dump. Adult rates typical of oscillometric modules [I]; a 120/80 takes ~33 s.
MIN_INFLATE_MMHG = 160
INFLATE_ABOVE_SYS_MMHG = 30
INFLATE_MMHG_PER_S = 20.0
DEFLATE_MMHG_PER_S = 4.0
DEFLATE_BELOW_DIA_MMHG = 10
DUMP_S = 2.0
#: Oscillation riding on the cuff pressure near MAP, mmHg (peak).
OSCILLATION_MMHG = 2.0

_COMMAND_LEN = {0x79: 5, 0x17: 5, 0x0C: 6}  # after `:`; every other command is `: cmd cs`
_MAX_COMMAND = 6
_START_COMMANDS = frozenset({0x20, 0x87, 0x28})  # adult, pediatric, neonate
_SUB_ABORT = b"\x01\x00"
_SUB_RETURN_STRING = b"\x02\x40"
_SUB_BP_DATA = b"\x03\x00"
_SUB_CUFF = b"\x05\x00"
_SUB_STATUS = (b"\x10\x03", b"\x11\x00")


def reply(body: bytes) -> bytes:
    """A module → host frame: `>`, LEN (whole frame), `body`, checksum."""
    frame = bytes((MODULE_SYNC, len(body) + 3)) + body
    return frame + bytes((checksum(frame),))


def ack(code: AckCode) -> bytes:
    """An acknowledgement frame (`> 04 <code> cs`)."""
    frame = reply(code.value.encode("ascii"))
    assert frame[1] == LEN_ACK
    return frame


def cuff_pressure_frame(mmhg: int) -> bytes:
    """The cuff pressure reply (`> 05 lo hi cs`), int16 LE."""
    frame = reply(int(mmhg).to_bytes(2, "little", signed=True))
    assert frame[1] == LEN_CUFF_PRESSURE
    return frame


def bp_data_frame(*, sys: int, dia: int, map_: int, pr: int, error: int = 0) -> bytes:
    """The 0x18 BP data frame: SYS [2..3], DIA [4..5], PR [16], MAP [18..19], error [20]."""
    body = bytearray(LEN_BP_DATA - 3)
    body[0:2] = sys.to_bytes(2, "little", signed=True)
    body[2:4] = dia.to_bytes(2, "little", signed=True)
    body[14] = pr & 0xFF
    body[16:18] = map_.to_bytes(2, "little", signed=True)
    body[18] = error
    frame = reply(bytes(body))
    assert frame[1] == LEN_BP_DATA
    return frame


def return_string_frame(text: str) -> bytes:
    """The 0x43 return string frame, NUL padded."""
    body = text.encode("ascii").ljust(LEN_RETURN_STRING - 3, b"\0")
    return reply(body)


class State(enum.Enum):
    IDLE = "idle"
    MEASURING = "measuring"


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    """One started measurement: its timing, what it will report, and how it ends."""

    #: Its number since power-up, from 0.
    index: int
    start: float
    end: float
    top_mmhg: int
    sys: int
    dia: int
    map: int
    pr: int
    #: 0: good; else the BP data error code.
    error: int
    #: False: the module never says `K` (a failure that leaves the host waiting).
    completes: bool

    def cuff_mmhg(self, t: float) -> int:
        """The cuff pressure at `t`: inflate, stepwise deflate with oscillations, dump."""
        inflate_end = self.start + self.top_mmhg / INFLATE_MMHG_PER_S
        if t <= self.start:
            return 0
        if t < inflate_end:
            return round((t - self.start) * INFLATE_MMHG_PER_S)
        floor = self.dia - DEFLATE_BELOW_DIA_MMHG
        deflate_end = inflate_end + (self.top_mmhg - floor) / DEFLATE_MMHG_PER_S
        if t < deflate_end:
            # Steps of 2 s, as a step-deflation module holds each level to read oscillations.
            held = inflate_end + 2.0 * ((t - inflate_end) // 2.0)
            p = self.top_mmhg - (held - inflate_end) * DEFLATE_MMHG_PER_S
            near_map = max(0.0, 1.0 - abs(p - self.map) / 40.0)
            beat = (t * self.pr / 60.0) % 1.0
            return round(p + OSCILLATION_MMHG * near_map * (1.0 if beat < 0.3 else -0.3))  # noqa: PLR2004
        if t < self.end:
            return round(floor * (self.end - t) / DUMP_S)
        return 0


@dataclass(frozen=True, slots=True)
class BpTruth:
    """The patient's BP and pulse at one moment."""

    sys: int
    dia: int
    pr: int


class SuntechModule:
    """The module's command/reply state machine on session time."""

    def __init__(
        self,
        *,
        patient: Callable[[float], BpTruth],
        failures: Sequence[BpFailure] = (),
        scatter: Callable[[int], tuple[int, int, int]] | None = None,
    ) -> None:
        self._patient = patient
        self._scatter = scatter or (lambda _index: (0, 0, 0))
        self._failures = sorted(failures, key=lambda f: f.at_s)
        self._failures_left = [f.count for f in self._failures]
        self._pending = b""
        self.state = State.IDLE
        self.measurement: Measurement | None = None
        #: The BP data of the last completed (or aborted) measurement.
        self.result: bytes | None = None
        #: Measurements started since power-up.
        self.started = 0
        #: Start commands the module ignored (a "none" failure).
        self.ignored = 0
        #: Commands that failed their checksum.
        self.bad_commands = 0

    # --- host → module ---

    def receive(self, data: bytes, t: float) -> bytes:
        """Take host bytes arriving at `t`; returns the replies to send at once."""
        out = bytearray(self.advance(t))
        buf = self._pending + data
        i = 0
        n = len(buf)
        while i < n:
            s = buf.find(HOST_SYNC, i)
            if s < 0:
                i = n
                break
            if s + 1 >= n:
                i = s
                break
            size = _COMMAND_LEN.get(buf[s + 1], 3)
            if s + size > n:
                i = s
                break
            frame = buf[s : s + size]
            if sum(frame) & 0xFF:
                self.bad_commands += 1
                out += ack(AckCode.UNRECOGNIZABLE)
                i = s + 1
                continue
            out += self._command(frame[1:-1], t)
            i = s + size
        self._pending = bytes(buf[i:])[-_MAX_COMMAND:]
        return bytes(out)

    def _command(self, body: bytes, t: float) -> bytes:
        op, sub = body[0], body[1:]
        if op in _START_COMMANDS:
            return self._start(t)
        if op == 0x79:  # noqa: PLR2004
            return self._query(sub, t)
        if op == 0x8A:  # reset  # noqa: PLR2004
            self.reset()
            return ack(AckCode.RECEIVED)
        if op in (0x00, 0x17, 0x0C):  # module data, initial inflate, pneumatics closed
            return ack(AckCode.RECEIVED)
        return ack(AckCode.UNDEFINED)

    def _query(self, sub: bytes, t: float) -> bytes:
        if sub == _SUB_CUFF:
            return cuff_pressure_frame(self.cuff_mmhg(t))
        if sub == _SUB_BP_DATA:
            return self.result if self.result is not None else ack(AckCode.ERROR)
        if sub == _SUB_ABORT:
            if self.state is State.MEASURING:
                self._finish_aborted()
            return ack(AckCode.ABORTED)
        if sub == _SUB_RETURN_STRING:
            return return_string_frame(VERSION)
        if sub in _SUB_STATUS:
            return ack(AckCode.RECEIVED)
        return ack(AckCode.UNDEFINED)

    def _start(self, t: float) -> bytes:
        if self.state is State.MEASURING:
            return ack(AckCode.BUSY)
        failure = self._take_failure(t)
        if failure is not None and failure.answer == "none":
            self.ignored += 1
            return b""
        index = self.started
        self.started += 1
        top, duration = self._timing(self._patient(t))
        truth = self._patient(t + duration / 2)  # what the oscillations show mid-deflation
        d_sys, d_dia, d_pr = self._scatter(index)
        sys, dia = truth.sys + d_sys, truth.dia + d_dia
        self.measurement = Measurement(
            index=index,
            start=t,
            end=t + duration,
            top_mmhg=top,
            sys=sys,
            dia=dia,
            map=mean_arterial(sys, dia),
            pr=max(1, truth.pr + d_pr),
            error=failure.code if failure is not None else 0,
            completes=failure is None or failure.answer == "error",
        )
        self.state = State.MEASURING
        return ack(AckCode.RECEIVED)

    @staticmethod
    def _timing(bp: BpTruth) -> tuple[int, float]:
        top = max(MIN_INFLATE_MMHG, bp.sys + INFLATE_ABOVE_SYS_MMHG)
        floor = bp.dia - DEFLATE_BELOW_DIA_MMHG
        return top, top / INFLATE_MMHG_PER_S + (top - floor) / DEFLATE_MMHG_PER_S + DUMP_S

    def _take_failure(self, t: float) -> BpFailure | None:
        for i, failure in enumerate(self._failures):
            if failure.at_s <= t and self._failures_left[i] > 0:
                self._failures_left[i] -= 1
                return failure
        return None

    # --- time ---

    def next_due(self) -> float | None:
        """When the module next speaks unasked (`K` at the end of a measurement)."""
        return self.measurement.end if self.measurement is not None else None

    def advance(self, t: float) -> bytes:
        """Replies due by `t` (the `K` of a measurement that ended), the rest of the state."""
        m = self.measurement
        if m is None or t < m.end:
            return b""
        self.measurement = None
        self.state = State.IDLE
        if not m.completes:
            return b""  # the failure leaves the host waiting for a `K` that never comes
        if m.error:
            self.result = bp_data_frame(sys=0, dia=0, map_=0, pr=0, error=m.error)
        else:
            self.result = bp_data_frame(sys=m.sys, dia=m.dia, map_=m.map, pr=m.pr)
        return ack(AckCode.COMPLETED)

    def cuff_mmhg(self, t: float) -> int:
        m = self.measurement
        return 0 if m is None else m.cuff_mmhg(t)

    def _finish_aborted(self) -> None:
        self.measurement = None
        self.state = State.IDLE
        self.result = bp_data_frame(sys=0, dia=0, map_=0, pr=0, error=ERROR_ABORTED)

    def reset(self) -> None:
        """Power-up state: no measurement, no result (a reset command, or the cable pulled)."""
        self._pending = b""
        self.measurement = None
        self.state = State.IDLE
        self.result = None
