"""Contec CMS50 "V7.0" live stream and command handling (reference/devices.md §1.2).

The device sends nothing until the host sends `7D 81 A1 80 80 80 80 80 80` (start live), then
9-byte type-0x01 packets at 60 Hz for a fixed ~30 s (MarkMLl), which a keep-alive (`AF`, or
`A1` again) extends. On the wire every byte after the type has bit 7 set; byte 1 (the "high
byte") carries the real bit 7 of each data byte. Identification commands get the replies
captured from real devices (headrotor/contec_data).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

PACKET_RATE_HZ = 60
LIVE_TYPE = 0x01
PACKET_LEN = 9
COMMAND_LEN = 9
#: The stream stops this long (session seconds) after the last start or keep-alive.
STREAM_LIFETIME_S = 30.0

# D0: 3..0 signal strength, 4 searching too long, 5 SpO2 dropping, 6 pulse beep, 7 finger out.
D0_SEARCH_TOO_LONG = 0x10
D0_BEEP = 0x40
D0_FINGER_OUT = 0x80
# D1: 6..0 pleth, 7 searching for pulse. D2: 3..0 bar graph, 4 PI invalid.
D1_SEARCHING = 0x80
D2_PI_INVALID = 0x10
#: "No value" as the devices send it (albertcbraun: SpO2 127); PR > 254 is invalid.
NO_SPO2 = 127
NO_PR = 255
NO_PI = 0xFFFF

CMD_START_LIVE = 0xA1
CMD_STOP_LIVE = 0xA2
CMD_STOP_STORED = 0xA7
CMD_KEEPALIVE = 0xAF
_HOST_SYNC = 0x7D
_HOST_SECOND = 0x81

#: Replies to identification commands, as captured (headrotor/contec_data, devices.md §1.2).
_REPLIES: dict[int, bytes] = {
    0xA0: bytes.fromhex("06808087"),
    0xB0: bytes.fromhex("118081818080808080"),
    0xAC: bytes.fromhex("0E8081"),
    0xA8: bytes.fromhex("028080A0A0A0A0A0A00281FFA0A0A0A0A0A0"),
    0xA9: bytes.fromhex("0380A0A0A0A0A0A0A0"),
    0xAA: bytes.fromhex("0480F5F3E5F2A0A0A0"),
    CMD_STOP_LIVE: bytes.fromhex("0C80"),
    CMD_STOP_STORED: bytes.fromhex("0C80"),
}


def v7_live_packets(data: npt.NDArray[np.uint8]) -> bytes:
    """Type-0x01 packets on the wire from their 7 data bytes each (packets, 7)."""
    p = np.empty((len(data), PACKET_LEN), dtype=np.uint8)
    p[:, 0] = LIVE_TYPE
    high = ((data >> 7) << np.arange(7, dtype=np.uint8)).sum(axis=1, dtype=np.uint16)
    p[:, 1] = 0x80 | high.astype(np.uint8)
    p[:, 2:] = data | 0x80
    return p.tobytes()


def v7_live_data(
    *,
    spo2: npt.NDArray[np.int64],
    pr: npt.NDArray[np.int64],
    pi_hundredths: npt.NDArray[np.int64],
    pleth: npt.NDArray[np.int64],
    signal: npt.NDArray[np.int64],
    bar: npt.NDArray[np.int64],
    finger_out: npt.NDArray[np.bool_],
    searching: npt.NDArray[np.bool_],
    beep: npt.NDArray[np.bool_],
) -> npt.NDArray[np.uint8]:
    """The 7 data bytes per packet; finger out sends the device's "no value" numbers.

    `pi_hundredths` = `NO_PI` (0xFFFF) is a device without PI: the PI-invalid bit is set.
    """
    n = len(spo2)
    d = np.zeros((n, 7), dtype=np.uint8)
    pi = np.where(finger_out, NO_PI, pi_hundredths)
    d[:, 0] = (
        np.clip(signal, 0, 8)
        | np.where(beep, D0_BEEP, 0)
        | np.where(finger_out, D0_FINGER_OUT | D0_SEARCH_TOO_LONG, 0)
    )
    d[:, 1] = np.clip(pleth, 0, 0x7F) | np.where(searching, D1_SEARCHING, 0)
    d[:, 2] = np.clip(bar, 0, 15) | np.where(pi == NO_PI, D2_PI_INVALID, 0)
    d[:, 3] = np.where(finger_out, NO_PR, pr)
    d[:, 4] = np.where(finger_out, NO_SPO2, spo2)
    d[:, 5] = pi & 0xFF
    d[:, 6] = (pi >> 8) & 0xFF
    return d


def v7_command(cmd: int) -> bytes:
    """A host → device command `7D 81 <cmd> 80 80 80 80 80 80`."""
    return bytes((_HOST_SYNC, _HOST_SECOND, cmd)) + b"\x80" * 6


class ContecV7Device:
    """The command side of a CMS50 in V7.0 mode: sans-I/O, session times passed in."""

    def __init__(self) -> None:
        self._pending = b""
        self._stream_from = 0.0
        self._stream_until: float | None = None
        #: Command bytes received, in order (for tests and logs).
        self.commands: list[int] = []

    def streaming(self, t: float) -> bool:
        """Whether live packets flow at session time `t`."""
        return self._stream_until is not None and self._stream_from <= t < self._stream_until

    def receive(self, data: bytes, t: float) -> bytes:
        """Take host bytes arriving at `t`; returns the replies to send at once."""
        buf = self._pending + data
        out = bytearray()
        i = 0
        while True:
            s = buf.find(_HOST_SYNC, i)
            if s < 0:
                i = len(buf)
                break
            if len(buf) - s < COMMAND_LEN:
                i = s
                break
            frame = buf[s : s + COMMAND_LEN]
            if frame[1] != _HOST_SECOND or min(frame[2:]) < 0x80:  # noqa: PLR2004
                i = s + 1  # not a command: hunt on
                continue
            out += self._command(frame[2], t)
            i = s + COMMAND_LEN
        self._pending = bytes(buf[i:])
        return bytes(out)

    def _command(self, cmd: int, t: float) -> bytes:
        self.commands.append(cmd)
        if cmd == CMD_START_LIVE:
            if not self.streaming(t):
                self._stream_from = t
            self._stream_until = t + STREAM_LIFETIME_S
        elif cmd == CMD_KEEPALIVE:
            if self.streaming(t):  # AF prolongs a stream; it does not restart one
                self._stream_until = t + STREAM_LIFETIME_S
        elif cmd == CMD_STOP_LIVE:
            self._stream_until = None
        return _REPLIES.get(cmd, b"")

    def reset(self) -> None:
        """Power lost with the cable: the stream stops and needs a new start."""
        self._pending = b""
        self._stream_until = None
