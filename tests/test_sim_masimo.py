"""The simulated Masimo Rad-8 speaks "ASCII 1" exactly as the captured devices do."""

# ruff: noqa: DTZ001 (a device clock is naive local time, as in the captures)

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessiond.sim.masimo import EXC_SENSOR_OFF, masimo_line

# reference/devices.md §2.5, the Rad-8 captures (the no-sensor one there is abbreviated).
GOLDEN: list[tuple[bytes, dict[str, Any]]] = [
    (
        (
            b"02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-%"
            b" DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
        ),
        {
            "device_time": datetime(2016, 2, 22, 22, 47, 45),
            "serial": "0000056661",
            "spo2": 98,
            "pr": 97,
            "pi": 3.60,
        },
    ),
    (
        (
            b"02/22/16 22:47:46 SN=0000056661 SPO2=098% BPM=096 PI=03.95% SPCO=--.-% SPMET=--.-%"
            b" DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
        ),
        {
            "device_time": datetime(2016, 2, 22, 22, 47, 46),
            "serial": "0000056661",
            "spo2": 98,
            "pr": 96,
            "pi": 3.95,
        },
    ),
    (
        (
            b"02/22/16 22:47:49 SN=0000056661 SPO2=098% BPM=097 PI=02.41% SPCO=--.-% SPMET=--.-%"
            b" DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
        ),
        {
            "device_time": datetime(2016, 2, 22, 22, 47, 49),
            "serial": "0000056661",
            "spo2": 98,
            "pr": 97,
            "pi": 2.41,
        },
    ),
    (
        (
            b"02/24/18 04:48:53 SN=0000145838 SPO2=097% BPM=080 PI=04.96% SPCO=--.-% SPMET=--.-%"
            b" DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
        ),
        {
            "device_time": datetime(2018, 2, 24, 4, 48, 53),
            "serial": "0000145838",
            "spo2": 97,
            "pr": 80,
            "pi": 4.96,
        },
    ),
    (
        (
            b"03/06/05 21:11:30 SN=0000066575 SPO2=098% BPM=057 PI=07.02% SPCO=--.-% SPMET=--.-%"
            b" DESAT=-- PIDELTA=+-- ALARM=0038 EXC=000800\r\n"
        ),
        {
            "device_time": datetime(2005, 3, 6, 21, 11, 30),
            "serial": "0000066575",
            "spo2": 98,
            "pr": 57,
            "pi": 7.02,
            "alarm": 0x38,
        },
    ),
]
LINE_LENGTH = len(GOLDEN[0][0])


@pytest.mark.parametrize(("expected", "fields"), GOLDEN)
def test_golden_lines_byte_for_byte(expected: bytes, fields: dict[str, Any]) -> None:
    """Each captured Rad-8 line is reproduced exactly from its values."""
    assert masimo_line(**fields) == expected


def test_missing_values_are_dashes_of_the_same_width() -> None:
    """No value: SPO2=---%, BPM=---, PI=--.--%, and the sensor-off EXC without the SET bit."""
    line = masimo_line(
        device_time=datetime(2026, 1, 5, 9, 0, 0),
        spo2=None,
        pr=None,
        pi=None,
        exc=EXC_SENSOR_OFF,
    )
    assert line == (
        b"01/05/26 09:00:00 SN=0000012345 SPO2=---% BPM=--- PI=--.--% SPCO=--.-% SPMET=--.-%"
        b" DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000020\r\n"
    )
    assert len(line) == LINE_LENGTH


@given(
    spo2=st.none() | st.integers(0, 100),
    pr=st.none() | st.integers(0, 999),
    pi=st.none() | st.floats(0, 99.99),
    alarm=st.integers(0, 0xFFFF),
    exc=st.integers(0, 0xFFFFFF),
)
def test_fixed_width_for_every_value(
    spo2: int | None, pr: int | None, pi: float | None, alarm: int, exc: int
) -> None:
    """Every field keeps its width, so every line has the same length."""
    line = masimo_line(
        device_time=datetime(2026, 1, 5, 9, 0, 0), spo2=spo2, pr=pr, pi=pi, alarm=alarm, exc=exc
    )
    assert len(line) == LINE_LENGTH
    assert line.endswith(b"\r\n")


@pytest.mark.parametrize(
    "bad",
    [
        {"spo2": 101},
        {"spo2": -1},
        {"pr": 1000},
        {"pi": 99.996},
        {"pi": -0.5},
        {"alarm": 0x10000},
        {"exc": 0x1000000},
        {"serial": "123"},
    ],
)
def test_values_that_do_not_fit_are_refused(bad: dict[str, Any]) -> None:
    """A value that would break the fixed width raises instead of sending a malformed line."""
    fields: dict[str, Any] = {
        "device_time": datetime(2026, 1, 5),
        "spo2": 97,
        "pr": 72,
        "pi": 3.0,
    } | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        masimo_line(**fields)
