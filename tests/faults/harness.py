"""The fault suite's harness: the real daemon as a process, its console, its log and its record.

`Sessiond` starts `python -m sessiond ...` in its own session (so a SIGKILL takes nothing else
with it) and collects its output lines as they come; tests wait on lines, never sleep. `Nurse`
signs in to the console, sends commands and keeps every WebSocket message with the session
time it carries, so a test can say what the nurse saw and when. `record` reads the SQLite
record read-only while the daemon writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import aiohttp
import aiomqtt

from sessiond.config import Config
from tests.mosquitto import HOST

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import TracebackType

#: Longest wait for the daemon to print its console address.
START_S = 30.0
#: Longest wait for a clean exit after SIGTERM.
STOP_S = 20.0
#: What the daemon must never print: a traceback or an asyncio callback error.
TRACEBACK = re.compile(r"Traceback|ERROR asyncio|Exception in callback|never retrieved")


def write_config(
    tmp: Path, *, scenario: str, extra: str = "", records: str = "", name: str = "room"
) -> Path:
    """A room configuration for `sessiond demo`: the scenario, the record in `tmp`, no music.

    `records` goes into the `[records]` table, `extra` after everything.
    """
    (tmp / f"{name}-scenario.toml").write_text(scenario, encoding="utf-8")
    config = tmp / f"{name}.toml"
    config.write_text(
        f"[room]\nid = 'room-f'\n[console]\nport = 0\n"
        f"[records]\npath = '{tmp / 'record.sqlite'}'\n{records}"
        f"[sim]\nscenario = '{tmp / f'{name}-scenario.toml'}'\n"
        + ("" if "[music]" in extra else "[music]\nenabled = false\n")
        + extra,
        encoding="utf-8",
    )
    return config


class Sessiond:
    """One `sessiond` process; `out` and `log` hold its stdout and stderr lines so far."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.cwd = cwd
        self.env = env
        self.out: list[str] = []
        self.log: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> Self:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sessiond", *self.args, cwd=self.cwd,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, env=None if self.env is None else {**os.environ, **self.env},
        )  # fmt: skip
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(self.proc.stdout, self.out)),
            asyncio.create_task(self._read(self.proc.stderr, self.log)),
        ]
        return self

    async def _read(self, stream: asyncio.StreamReader, into: list[str]) -> None:
        while line := await stream.readline():
            into.append(line.decode(errors="replace").rstrip("\n"))
            self._changed.set()
        self._changed.set()

    async def wait_line(
        self, pattern: str, *, log: bool = True, after: int = 0, within: float = 10.0
    ) -> str:
        """The first line (of the log, or of stdout) from index `after` matching `pattern`."""
        lines = self.log if log else self.out
        regex = re.compile(pattern)
        async with asyncio.timeout(within):
            i = after
            while True:
                while i < len(lines):
                    if regex.search(lines[i]):
                        return lines[i]
                    i += 1
                if self.proc is not None and self.proc.returncode is not None:
                    msg = f"sessiond exited ({self.proc.returncode}) before {pattern!r}:\n"
                    raise AssertionError(msg + "\n".join(self.log[-30:]))
                self._changed.clear()
                await self._changed.wait()

    async def console_url(self) -> str:
        line = await self.wait_line(r"^console: ", log=False, within=START_S)
        return line.split()[1].rstrip("/")

    def lines_matching(self, pattern: str) -> list[str]:
        regex = re.compile(pattern)
        return [line for line in self.log if regex.search(line)]

    def assert_no_traceback(self) -> None:
        bad = [line for line in self.log if TRACEBACK.search(line)]
        assert not bad, "\n".join(self.log)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing of the shutdown runs."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)

    async def stop(self) -> int:
        """SIGTERM and the exit status (a clean shutdown exits 0)."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        async with asyncio.timeout(STOP_S):
            code = await self.proc.wait()
            await asyncio.gather(*self._readers)
        return code

    async def exited(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        await asyncio.gather(*self._readers)
        return code

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.kill()
            await self.proc.wait()
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


class Nurse:
    """A signed-in console user with the room's WebSocket open; `seen` is every message."""

    def __init__(self, base: str, *, user: str = "nurse", password: str = "demo") -> None:  # noqa: S107
        self.base = base
        self.user, self.password = user, password
        self.seen: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._stack = contextlib.AsyncExitStack()
        self.http: aiohttp.ClientSession | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        # unsafe=True keeps the cookie of an IP-address host (127.0.0.1).
        jar = aiohttp.CookieJar(unsafe=True)
        self.http = await self._stack.enter_async_context(aiohttp.ClientSession(cookie_jar=jar))
        status, body = await self.post("/api/login", {"user": self.user, "password": self.password})
        assert status == 200, body
        ws = await self._stack.enter_async_context(self.http.ws_connect(f"{self.base}/ws"))
        self._reader = asyncio.create_task(self._read(ws))
        await self.wait(lambda m: m.get("type") == "status")
        return self

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.seen.append(json.loads(msg.data))
                self._changed.set()
        self._changed.set()

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self._stack.aclose()

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        assert self.http is not None
        async with self.http.post(f"{self.base}{path}", json=body) as response:
            return response.status, await response.json()

    async def wait(
        self, match: Callable[[dict[str, Any]], bool], *, within: float = 10.0, after: int = 0
    ) -> dict[str, Any]:
        """The first message (from index `after`) that `match`es."""
        async with asyncio.timeout(within):
            i = after
            while True:
                while i < len(self.seen):
                    if match(self.seen[i]):
                        return self.seen[i]
                    i += 1
                self._changed.clear()
                await self._changed.wait()

    def alarms(self, alarm_id: str | None = None) -> list[tuple[float, str, str, str, str | None]]:
        """Alarm transitions seen: (session t, id, priority, state, device)."""
        return [
            (m["t"], m["id"], m["priority"], m["state"], m.get("device"))
            for m in self.seen
            if m.get("type") == "alarm" and (alarm_id is None or m["id"] == alarm_id)
        ]

    def now(self) -> float:
        """The latest session time the page was told of (ticks and events)."""
        return max((m["t"] for m in self.seen if isinstance(m.get("t"), int | float)), default=0)


def alarm(
    alarm_id: str, state: str = "active", priority: str | None = None, device: str | None = None
) -> Callable[[dict[str, Any]], bool]:
    """A WebSocket message predicate for one alarm transition."""

    def match(m: dict[str, Any]) -> bool:
        return (
            m.get("type") == "alarm"
            and m["id"] == alarm_id
            and m["state"] == state
            and (priority is None or m["priority"] == priority)
            and (device is None or m.get("device") == device)
        )

    return match


@contextlib.contextmanager
def record(path: Path) -> Iterator[sqlite3.Connection]:
    """The SQLite record, read-only (the daemon may be writing it)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        yield db
    finally:
        db.close()


async def publish(port: int, topic: str, payload: bytes) -> None:
    """Publish one message (QoS 1) on the test broker, as a nurse station would."""
    async with aiomqtt.Client(HOST, port) as client:
        await client.publish(topic, payload, qos=1)


async def start_session(nurse: Nurse, *, dose: bool = True) -> str:
    """Start an IV session (and mark the dose) as the nurse does; the session id."""
    status, body = await nurse.post("/api/session/start", {"route": "iv"})
    assert status == 200, body
    if dose:
        # The nurse ticks the pre-dose checklist, which the dose needs.
        ticked = {"kind": "predose", "checked": [i.id for i in Config().checklists.predose]}
        status, answer = await nurse.post("/api/checklists", ticked)
        assert status == 200, answer
        status, answer = await nurse.post("/api/session/dose", {})
        assert status == 200, answer
    return str(body["session_id"])
