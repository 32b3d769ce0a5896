"""Running as a systemd service: readiness and watchdog keep-alives (sd_notify), and logs to
the journal as structured entries. Both speak systemd's documented datagram protocols on
Unix sockets, so neither needs a library, and both are silent when not under systemd.

The watchdog keep-alive is sent from the event loop itself: a loop that hangs stops sending
it, and systemd restarts the daemon (`WatchdogSec=` in the unit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import traceback
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

logger = logging.getLogger(__name__)

#: The journal's native socket (systemd.journal-fields(7), "native protocol").
JOURNAL_SOCKET = "/run/systemd/journal/socket"
#: syslog priorities by logging level, for the journal's PRIORITY field.
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def _address(path: str) -> str:
    # A leading `@` names a socket in the abstract namespace (sd_notify(3)).
    return "\0" + path[1:] if path.startswith("@") else path


class ServiceNotifier:
    """sd_notify(3): READY=1, STATUS=..., WATCHDOG=1, STOPPING=1 to `$NOTIFY_SOCKET`."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._path = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        #: Half the watchdog interval (systemd's advice), or None without a watchdog.
        self.keepalive_s = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 and mine else None
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._path is not None

    def notify(self, message: str) -> bool:
        """Send one notification; False when not under systemd or when it could not be sent."""
        if self._path is None:
            return False
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)  # noqa: FBT003  (socket API)
        try:
            self._sock.sendto(message.encode(), _address(self._path))
        except OSError as exc:
            logger.warning("systemd: cannot notify %s: %s", self._path, exc)
            return False
        return True

    def ready(self, status: str = "") -> None:
        """The daemon serves: links, console and record are up."""
        self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))
        if self.keepalive_s is not None and self._task is None:
            self._task = asyncio.create_task(self._keepalive(), name="sessiond.watchdog")

    def stopping(self) -> None:
        self.notify("STOPPING=1")
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _keepalive(self) -> None:
        assert self.keepalive_s is not None
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.keepalive_s)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class JournalHandler(logging.Handler):
    """Log records as journal entries with fields (MESSAGE, PRIORITY, LOGGER, CODE_*).

    Entries stay structured in `journalctl -o json`; `journalctl -u sessiond -p warning`
    filters by priority. Nothing here names a patient: the log never holds patient data.
    """

    def __init__(self, path: str = JOURNAL_SOCKET, identifier: str = "sessiond") -> None:
        super().__init__()
        self._address = _address(path)
        self._identifier = identifier
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + "".join(traceback.format_exception(*record.exc_info))
            fields = {
                "MESSAGE": message,
                "PRIORITY": str(_PRIORITY.get(record.levelno, 6)),
                "SYSLOG_IDENTIFIER": self._identifier,
                "LOGGER": record.name,
                "CODE_FILE": record.pathname,
                "CODE_LINE": str(record.lineno),
                "CODE_FUNC": record.funcName,
            }
            self._sock.sendto(_entry(fields), self._address)
        except Exception:  # noqa: BLE001  (logging must never raise into the daemon)
            self.handleError(record)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        super().close()


def _entry(fields: Mapping[str, str]) -> bytes:
    """The native protocol: `KEY=value` lines; a value with a newline is length-prefixed."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + len(data).to_bytes(8, "little") + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


def journal_wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether stderr is the journal (systemd sets `$JOURNAL_STREAM` for the service)."""
    env = os.environ if environ is None else environ
    stream = env.get("JOURNAL_STREAM", "")
    if not stream or not os.path.exists(JOURNAL_SOCKET):  # noqa: PTH110
        return False
    with contextlib.suppress(OSError, ValueError):
        device, inode = (int(part) for part in stream.split(":"))
        st = os.fstat(2)
        return (st.st_dev, st.st_ino) == (device, inode)
    return False
