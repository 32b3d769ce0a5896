"""The virtual serial port: a raw pty that never blocks the simulator and can be unplugged."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
import serial

from sessiond.sim.pty import VirtualSerialPort

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def port() -> Iterator[VirtualSerialPort]:
    with VirtualSerialPort("spo2") as port:
        yield port


def test_bytes_pass_unchanged(port: VirtualSerialPort) -> None:
    """CR, LF and every other byte reach a pyserial reader exactly as written."""
    data = bytes(range(256)) + b"line\r\n\r\rmore\n"
    with serial.Serial(port.path, 9600, timeout=2) as reader:
        assert port.write(data) == len(data)
        assert reader.read(len(data)) == data
    assert port.written_bytes == len(data)
    assert port.overflow_bytes == 0


def test_path_is_a_tty(port: VirtualSerialPort) -> None:
    """The path is the slave end of a pseudo-terminal."""
    assert port.path.startswith("/dev/")
    fd = os.open(port.path, os.O_RDWR | os.O_NOCTTY)
    try:
        assert os.isatty(fd)
    finally:
        os.close(fd)


def test_write_never_blocks_and_counts_what_a_full_buffer_drops(port: VirtualSerialPort) -> None:
    """With no reader the pty fills; later bytes are dropped and counted, never waited for."""
    chunk = b"x" * 4096
    total = 0
    for _ in range(256):  # 1 MiB: far more than a pty buffers
        port.write(chunk)
        total += len(chunk)
    assert port.overflow_bytes > 0
    assert port.written_bytes + port.overflow_bytes == total


def test_unplug_breaks_a_pyserial_reader(port: VirtualSerialPort) -> None:
    """Closing the master is a pulled cable: the reader raises SerialException."""
    with serial.Serial(port.path, 9600, timeout=2) as reader:
        port.write(b"hello\r\n")
        assert reader.read(7) == b"hello\r\n"  # unread bytes would be lost with the cable
        port.unplug()
        assert not port.plugged
        with pytest.raises(serial.SerialException):
            reader.read(1)
    assert port.write(b"into the void") == 0


def test_close_is_idempotent() -> None:
    """Closing twice, or after unplugging, is harmless."""
    port = VirtualSerialPort("spo2")
    port.unplug()
    port.close()
    port.close()
    assert "unplugged" in repr(port)
