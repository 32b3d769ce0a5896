"""A real Mosquitto broker for tests: a free loopback port, a temp config, its own session.

`Mosquitto` starts `/usr/sbin/mosquitto`, waits until it accepts connections (polling a TCP
connect, never a blind sleep), can stop and restart on the same port (to test reconnects)
and is always stopped by its own PID. `listen` subscribes a recording client to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Self

import aiomqtt

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from types import TracebackType

MOSQUITTO = Path("/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = Path("/usr/bin/mosquitto_passwd")
HOST = "127.0.0.1"
#: Longest a broker may take to accept connections after it was started.
START_TIMEOUT_S = 5.0
#: Longest a broker may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 5.0
#: The largest publish the broker accepts (bytes), as in `deploy/mosquitto/mosquitto.conf`.
MESSAGE_SIZE_LIMIT = 1_048_576
_POLL_S = 0.02


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def available() -> bool:
    """Whether Mosquitto is installed (tests that need it skip otherwise)."""
    return MOSQUITTO.exists()


class Mosquitto:
    """One broker process on `HOST:port`; a context manager that stops it on exit."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        allow_anonymous: bool = True,
        message_size_limit: int = MESSAGE_SIZE_LIMIT,
        extra_config: tuple[str, ...] = (),
    ) -> None:
        self.workdir = workdir
        self.port = port if port is not None else free_port()
        self.host = HOST
        self.config_path = workdir / f"mosquitto-{self.port}.conf"
        self.log_path = workdir / f"mosquitto-{self.port}.log"
        lines = [
            f"listener {self.port} {HOST}",
            f"allow_anonymous {'true' if allow_anonymous else 'false'}",
            "persistence false",
            f"message_size_limit {message_size_limit}",  # 0: none
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            *extra_config,
        ]
        if os.geteuid() == 0:
            # Started as root it would drop to `mosquitto`, which cannot read the temp dir.
            lines.append("user root")
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the broker and return once it accepts TCP connections."""
        if self.running:
            msg = f"mosquitto on port {self.port} is already running"
            raise RuntimeError(msg)
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [str(MOSQUITTO), "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._proc.poll() is not None:
                self._close_log()
                msg = f"mosquitto exited with {self._proc.returncode}: {self.log()}"
                raise RuntimeError(msg)
            try:
                with socket.create_connection((HOST, self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    msg = f"mosquitto did not listen on {self.port} within {START_TIMEOUT_S} s"
                    raise RuntimeError(msg) from None
                time.sleep(_POLL_S)  # polling a port: nothing to wait on instead

    def stop(self) -> None:
        """SIGTERM the broker (by its PID) and wait; SIGKILL when it does not exit in time."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the broker (a crash: no clean shutdown)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._close_log()

    def restart(self) -> None:
        """Stop and start again on the same port (retained messages are lost: no persistence)."""
        self.stop()
        self.start()

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        return ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def password_file(path: Path, users: dict[str, str]) -> Path:
    """A Mosquitto password file for `users` (name -> password), made by `mosquitto_passwd`."""
    path.write_text("", encoding="utf-8")
    for user, password in users.items():
        subprocess.run(
            [str(MOSQUITTO_PASSWD), "-b", str(path), user, password],
            check=True,
            capture_output=True,
        )
    return path


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    def json(self) -> Any:
        return json.loads(self.payload)


class Listener:
    """An MQTT client that records every message on its filters; tests wait on it."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.messages: list[Received] = []
        self._changed = asyncio.Event()

    async def read(self) -> None:
        async for m in self.client.messages:
            payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
            self.messages.append(Received(m.topic.value, payload, m.retain, m.qos))
            self._changed.set()

    def mark(self) -> int:
        """An index: `wait_for(after=...)` then looks only at what arrives later."""
        return len(self.messages)

    def on(self, topic_filter: str, *, after: int = 0) -> list[Received]:
        return [m for m in self.messages[after:] if aiomqtt.Topic(m.topic).matches(topic_filter)]

    async def wait_count(
        self,
        topic_filter: str,
        count: int,
        match: Callable[[Received], bool] | None = None,
        *,
        after: int = 0,
        within_s: float = 5.0,
    ) -> list[Received]:
        """The first `count` messages (from index `after`) on `topic_filter` that `match`."""
        async with asyncio.timeout(within_s):
            while True:
                found = [m for m in self.on(topic_filter, after=after) if match is None or match(m)]
                if len(found) >= count:
                    return found[:count]
                self._changed.clear()
                await self._changed.wait()

    async def wait_for(
        self,
        topic_filter: str,
        match: Callable[[Received], bool] | None = None,
        *,
        after: int = 0,
        within_s: float = 5.0,
    ) -> Received:
        """The first message (from index `after`) on `topic_filter` that `match`es."""
        i = after
        async with asyncio.timeout(within_s):
            while True:
                while i < len(self.messages):
                    m = self.messages[i]
                    i += 1
                    if aiomqtt.Topic(m.topic).matches(topic_filter) and (match is None or match(m)):
                        return m
                self._changed.clear()
                await self._changed.wait()


@contextlib.asynccontextmanager
async def listen(
    port: int, *filters: str, host: str = HOST, **client_args: Any
) -> AsyncIterator[Listener]:
    """A `Listener` subscribed (QoS 1) to `filters` on the broker at `host:port`."""
    async with aiomqtt.Client(host, port, **client_args) as client:
        listener = Listener(client)
        await client.subscribe([(f, 1) for f in filters])
        task = asyncio.create_task(listener.read())
        try:
            yield listener
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task
