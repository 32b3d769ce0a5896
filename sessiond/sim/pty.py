"""A virtual serial port: a pseudo-terminal whose slave end a reader opens like a real tty.

The simulator writes device bytes into the master end; the daemon (or any pyserial reader)
opens `.path`. Closing the master is an unplugged cable: the reader's next read raises
`serial.SerialException` (reference/toolchain.md, "Serial over a pseudo-terminal").
"""

from __future__ import annotations

import errno
import logging
import os
import tty
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from types import TracebackType

logger = logging.getLogger(__name__)


class VirtualSerialPort:
    """One device's end of a pty pair; `.path` is what a reader opens."""

    def __init__(self, name: str) -> None:
        self.name = name
        master, slave = os.openpty()
        try:
            # Raw: CR and LF pass unchanged, and no echo back into the master.
            tty.setraw(slave)
            # A device never waits for the host: a full buffer loses bytes, as a UART's would.
            os.set_blocking(master, False)
            self.path = os.ttyname(slave)
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        self._master: int | None = master
        # Held open so the pty exists (and accepts writes) while no reader has it open.
        self._slave: int | None = slave
        #: Bytes dropped because the reader did not keep up.
        self.overflow_bytes = 0
        #: Bytes handed to the pty.
        self.written_bytes = 0

    @property
    def plugged(self) -> bool:
        """False once unplugged or closed."""
        return self._master is not None

    def write(self, data: bytes) -> int:
        """Write without blocking; returns the bytes taken (the rest is dropped and counted)."""
        if self._master is None:
            return 0  # unplugged: the bytes go nowhere, as with a pulled cable
        try:
            n = os.write(self._master, data)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            n = 0  # Linux reports EIO while the slave side is hung up
        if n < len(data):
            self.overflow_bytes += len(data) - n
            logger.debug("%s: reader too slow, dropped %d bytes", self.name, len(data) - n)
        self.written_bytes += n
        return n

    @property
    def host_fd(self) -> int | None:
        """The descriptor on which the host's commands arrive (for `loop.add_reader`)."""
        return self._master

    def read(self) -> bytes:
        """What the host sent to the device, without blocking (b"" when nothing waits)."""
        if self._master is None:
            return b""
        try:
            return os.read(self._master, 4096)
        except OSError:  # nothing waiting (EAGAIN), or the slave side hung up (EIO)
            return b""

    def unplug(self) -> None:
        """Pull the cable: close the master end; a reader gets an error, later writes vanish."""
        if self._master is not None:
            os.close(self._master)
            self._master = None

    def close(self) -> None:
        """Release both ends of the pty."""
        self.unplug()
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "plugged" if self.plugged else "unplugged"
        return f"<VirtualSerialPort {self.name} {self.path} {state}>"
