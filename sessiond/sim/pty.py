"""A virtual serial port: a pseudo-terminal whose slave end a reader opens like a real tty.

The simulator writes device bytes into the master end; the daemon (or any pyserial reader)
opens `.path`. Closing the master is an unplugged cable: the reader's next read raises
`serial.SerialException` (reference/toolchain.md, "Serial over a pseudo-terminal").

A pty cannot come back under the same `/dev/pts/N` name, so a port that is to be unplugged
and plugged back in gets a stable name, a symlink to the current pty — what udev's
`/dev/serial/by-id/...` link is for a USB serial cable. Unplugging removes the link (the
device is gone) and plugging in makes a new pty and points the link at it.
"""

from __future__ import annotations

import errno
import logging
import os
import tty
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

logger = logging.getLogger(__name__)


class VirtualSerialPort:
    """One device's end of a pty pair; `.path` is what a reader opens."""

    def __init__(self, name: str, *, link: Path | None = None) -> None:
        self.name = name
        #: The stable name (a symlink to the current pty), if the port has one.
        self.link = link
        self._master: int | None = None
        self._slave: int | None = None
        #: The current pty's slave path (changes at each plug-in).
        self.tty_path = ""
        self._open_pty()
        #: Bytes dropped because the reader did not keep up.
        self.overflow_bytes = 0
        #: Bytes handed to the pty.
        self.written_bytes = 0
        #: How many times the cable was plugged back in.
        self.replugs = 0

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        try:
            # Raw: CR and LF pass unchanged, and no echo back into the master.
            tty.setraw(slave)
            # A device never waits for the host: a full buffer loses bytes, as a UART's would.
            os.set_blocking(master, False)
            tty_path = os.ttyname(slave)
            if self.link is not None:
                # Replace atomically: a reader never sees the name missing while plugged.
                fresh = self.link.with_name(f".{self.link.name}.new")
                fresh.unlink(missing_ok=True)
                fresh.symlink_to(tty_path)
                fresh.replace(self.link)
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        self._master = master
        # Held open so the pty exists (and accepts writes) while no reader has it open.
        self._slave = slave
        self.tty_path = tty_path

    @property
    def path(self) -> str:
        """What a reader opens: the stable link if there is one, else the pty itself."""
        return str(self.link) if self.link is not None else self.tty_path

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
        """Pull the cable: close the master end; a reader gets an error, later writes vanish.

        A stable link disappears with the device, as a by-id name does.
        """
        if self._master is not None:
            os.close(self._master)
            self._master = None
            if self.link is not None:
                self.link.unlink(missing_ok=True)

    def replug(self) -> None:
        """Plug the cable back in: a new pty, at the same stable path if the port has one."""
        if self._master is not None:
            return
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None
        self._open_pty()
        self.replugs += 1

    def close(self) -> None:
        """Release both ends of the pty (and the stable link)."""
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
