"""The virtual serial port: a raw pty that never blocks the simulator and can be unplugged."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import pytest
import serial

from sessiond.sim.pty import VirtualSerialPort

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


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


def test_a_stable_link_follows_the_pty_across_a_replug(tmp_path: Path) -> None:
    """Unplugged, the by-id-style name disappears; plugged back, it points at a new pty."""
    link = tmp_path / "usb-sim-spo2"
    with VirtualSerialPort("spo2", link=link) as port:
        assert port.path == str(link)
        first_tty = port.tty_path
        assert os.path.realpath(link) == first_tty
        with serial.Serial(port.path, 9600, timeout=2) as reader:
            port.write(b"one\r\n")
            assert reader.read(5) == b"one\r\n"
            port.unplug()
            assert not link.exists()
            with pytest.raises(serial.SerialException):
                reader.read(1)
        with pytest.raises(serial.SerialException):
            serial.Serial(str(link), 9600)
        port.replug()
        assert port.plugged
        assert port.replugs == 1
        assert port.path == str(link)
        assert os.path.realpath(link) == port.tty_path
        with serial.Serial(port.path, 9600, timeout=2) as reader:
            port.write(b"two\r\n")
            assert reader.read(5) == b"two\r\n"
            reader.write(b"cmd")
            assert wait_read(port) == b"cmd"
    assert not link.exists()


def test_replug_without_a_link_gives_a_new_pty(tmp_path: Path) -> None:
    """A port without a stable name comes back too, at whatever pty the kernel gives."""
    with VirtualSerialPort("spo2") as port:
        port.unplug()
        port.replug()
        port.replug()  # already plugged: nothing happens
        assert port.replugs == 1
        assert port.path == port.tty_path
        with serial.Serial(port.path, 9600, timeout=2) as reader:
            port.write(b"x")
            assert reader.read(1) == b"x"


def wait_read(port: VirtualSerialPort, timeout: float = 2.0) -> bytes:
    """What the host wrote, once it arrived (polling the non-blocking master)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = port.read()
        if data:
            return data
        time.sleep(0.005)
    return b""
