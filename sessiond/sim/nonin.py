"""Nonin Data Format 7 as an OEM III / Xpod module sends it (reference/devices.md §3.2).

A frame is `[STATUS, PLETH_MSB, PLETH_LSB, VALUE, CHK]`, CHK the sum of the four bytes mod
256; 25 frames make a packet (SYNC on the first), 3 packets a second (75 Hz). The packet's 25
VALUE bytes spell out HR, SpO2 and the rest (the DF2 table). Everything is built for many
packets at once as numpy (packets, 25, 5) arrays.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

FRAME_LEN = 5
FRAMES_PER_PACKET = 25
PACKETS_PER_S = 3
FRAME_RATE_HZ = FRAMES_PER_PACKET * PACKETS_PER_S

# STATUS byte bits.
STATUS_BIT7 = 0x80  # always set
SNSD = 0x40  # sensor disconnected
ARTF = 0x20  # artifact
OOT = 0x10  # out of track
SNSA = 0x08  # sensor alarm
SYNC = 0x01  # first frame of a packet
# Perfusion, bits 2..1, set for 12 frames (160 ms) from each beat.
PERFUSION_GREEN = 0x02
PERFUSION_RED = 0x04
PERFUSION_YELLOW = 0x06
PERFUSION_FRAMES = 12

#: "No value" in the VALUE bytes.
NO_SPO2 = 127
NO_HR = 511
#: Firmware revision in VALUE byte 3 (the pufferfish OEM III test packet says 48).
FIRMWARE_REVISION = 48
#: The 3 Hz timer in VALUE bytes 5/6 counts packets in 14 bits.
_TIMER_MASK = 0x3FFF


def df7_values(
    *, spo2: npt.NDArray[np.int64], pr: npt.NDArray[np.int64], packet: npt.NDArray[np.int64]
) -> npt.NDArray[np.uint8]:
    """VALUE bytes (packets, 25) for SpO2 / HR per packet (`NO_SPO2` / `NO_HR`: no value).

    The extended-average and display ("-D") values are sent equal to the recording values:
    the simulator has no averaging to model, and the decoder reads the recording values.
    """
    hr = pr.astype(np.int64)
    sat = spo2.astype(np.uint8)
    hr_msb = ((hr >> 7) & 0x03).astype(np.uint8)
    hr_lsb = (hr & 0x7F).astype(np.uint8)
    timer = packet & _TIMER_MASK
    v = np.zeros((len(hr), FRAMES_PER_PACKET), dtype=np.uint8)
    v[:, 0], v[:, 1], v[:, 2] = hr_msb, hr_lsb, sat
    v[:, 3] = FIRMWARE_REVISION
    v[:, 5] = (timer >> 7) & 0x7F
    v[:, 6] = timer & 0x7F
    v[:, 8] = v[:, 9] = v[:, 10] = sat  # SpO2-D, SpO2 fast, SpO2 beat-to-beat
    v[:, 13], v[:, 14] = hr_msb, hr_lsb  # E-HR
    v[:, 15] = v[:, 16] = sat  # E-SpO2, E-SpO2-D
    v[:, 19], v[:, 20] = hr_msb, hr_lsb  # HR-D
    v[:, 21], v[:, 22] = hr_msb, hr_lsb  # E-HR-D
    return v


def df7_packets(
    *,
    status: npt.NDArray[np.uint8],
    pleth: npt.NDArray[np.uint16],
    values: npt.NDArray[np.uint8],
) -> bytes:
    """Whole packets from per-frame status bits, pleth and VALUE bytes, each (packets, 25).

    Bit 7 and SYNC (first frame of each packet) are added here; checksums computed here.
    """
    f = np.empty((len(status), FRAMES_PER_PACKET, FRAME_LEN), dtype=np.uint8)
    f[..., 0] = status | STATUS_BIT7
    f[:, 0, 0] |= SYNC
    f[:, 1:, 0] &= ~np.uint8(SYNC)
    f[..., 1] = pleth >> 8
    f[..., 2] = pleth & 0xFF
    f[..., 3] = values
    f[..., 4] = f[..., :4].sum(axis=-1, dtype=np.uint32) & 0xFF
    return f.tobytes()


def df7_packet(
    *,
    spo2: int | None,
    pr: int | None,
    status: int = 0,
    pleth: tuple[int, ...] = (32768,) * FRAMES_PER_PACKET,
    perfusion: int = 0,
    packet: int = 0,
) -> bytes:
    """One packet with the same status bits on every frame and `perfusion` on the first 12."""
    frames = np.full((1, FRAMES_PER_PACKET), status, dtype=np.uint8)
    frames[0, :PERFUSION_FRAMES] |= perfusion
    return df7_packets(
        status=frames,
        pleth=np.array([pleth], dtype=np.uint16),
        values=df7_values(
            spo2=np.array([NO_SPO2 if spo2 is None else spo2]),
            pr=np.array([NO_HR if pr is None else pr]),
            packet=np.array([packet]),
        ),
    )
