"""Masimo "ASCII 1" output lines as a Rad-8 sends them (reference/devices.md §2).

One fixed-width line per second: the device's local clock, then `KEY=value` tokens, CR LF.
Missing values are dashes of the same width. SpCO, SpMET, DESAT and PIDELTA are not
measured by a plain SET sensor, so they are always dashes, as in every public capture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

#: EXC bit: the device runs in full Masimo SET mode (set in every normal line).
EXC_SET = 0x800
#: EXC bit: the sensor is off the patient.
EXC_SENSOR_OFF = 0x020
#: EXC bit: searching for a pulse.
EXC_PULSE_SEARCH = 0x008
#: EXC bit: no sensor connected.
EXC_NO_SENSOR = 0x001
#: EXC bit: interference (motion): the decoder's artifact flag.
EXC_INTERFERENCE = 0x010
#: EXC bit: low perfusion index.
EXC_LOW_PERFUSION = 0x004
#: EXC bit: low signal IQ.
EXC_LOW_SIGNAL_IQ = 0x400

_SERIAL_WIDTH = 10
_MAX_PR = 999  # three digits
_MAX_PI = 99.99  # two integer digits, two decimals
_MAX_ALARM = 0xFFFF  # four hex digits
_MAX_EXC = 0xFFFFFF  # six hex digits


def masimo_line(
    *,
    device_time: datetime,
    spo2: int | None,
    pr: int | None,
    pi: float | None,
    exc: int = EXC_SET,
    alarm: int = 0,
    serial: str = "0000012345",
) -> bytes:
    """One Rad-8 "ASCII 1" line, CR LF included; `None` values are sent as dashes."""
    if spo2 is not None and not 0 <= spo2 <= 100:  # noqa: PLR2004 (a percentage)
        msg = f"spo2 {spo2} is not a percentage"
        raise ValueError(msg)
    if pr is not None and not 0 <= pr <= _MAX_PR:
        msg = f"pr {pr} does not fit the 3-digit BPM field"
        raise ValueError(msg)
    # Compare the rounded value: 99.996 would print as 100.00 and widen the field.
    if pi is not None and not 0 <= round(pi, 2) <= _MAX_PI:
        msg = f"pi {pi} does not fit the PI field (00.00-99.99)"
        raise ValueError(msg)
    if not 0 <= alarm <= _MAX_ALARM:
        msg = f"alarm {alarm:#x} does not fit 4 hex digits"
        raise ValueError(msg)
    if not 0 <= exc <= _MAX_EXC:
        msg = f"exc {exc:#x} does not fit 6 hex digits"
        raise ValueError(msg)
    if len(serial) != _SERIAL_WIDTH or not serial.isascii():
        msg = f"serial {serial!r} is not 10 ASCII characters"
        raise ValueError(msg)
    spo2_text = "---" if spo2 is None else f"{spo2:03d}"
    pr_text = "---" if pr is None else f"{pr:03d}"
    pi_text = "--.--" if pi is None else f"{pi:05.2f}"
    line = (
        f"{device_time:%m/%d/%y %H:%M:%S} SN={serial} SPO2={spo2_text}% BPM={pr_text}"
        f" PI={pi_text}% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+--"
        f" ALARM={alarm:04X} EXC={exc:06X}\r\n"
    )
    return line.encode("ascii")
