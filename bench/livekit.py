"""What the live benches share: a daemon in its own process, a signed-in console, /proc figures.

`bench/live_latency.py` and `bench/footprint.py` start a real Mosquitto (tests/mosquitto.py),
a real daemon (`bench/live_daemon.py`, which is `sessiond run` with a few probes) and one
console client that signs in and follows `/ws` as the nurse's page does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import re
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import aiohttp

from sessiond.console.auth import hash_password

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
DAEMON = Path(__file__).resolve().parent / "live_daemon.py"
USER, PASSWORD = "nurse", "bench-password"
#: Longest a daemon may take to print its console address.
START_TIMEOUT_S = 30.0


def machine() -> str:
    """The machine a figure was measured on, and how loaded it was when the run ended."""
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({model}), load average {load}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def percentiles(values_ms: Sequence[float]) -> tuple[float, float, float]:
    """p50, p99 and max of `values_ms` (nearest rank)."""
    ordered = sorted(values_ms)
    p99 = ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]
    return statistics.median(ordered), p99, ordered[-1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Memory:
    rss_kb: int
    pss_kb: int
    anon_kb: int
    hwm_kb: int
    threads: int

    def line(self) -> str:
        return (
            f"RSS {self.rss_kb / 1024:.1f} MB (PSS {self.pss_kb / 1024:.1f} MB, anonymous "
            f"{self.anon_kb / 1024:.1f} MB, peak {self.hwm_kb / 1024:.1f} MB), "
            f"{self.threads} threads"
        )


def memory(pid: int) -> Memory:
    """RSS and peak (status), PSS and anonymous memory (smaps_rollup) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()

    def kb(text: str, key: str) -> int:
        found = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
        return int(found.group(1)) if found else 0

    threads = re.search(r"^Threads:\s+(\d+)", status, re.MULTILINE)
    return Memory(
        rss_kb=kb(status, "VmRSS"),
        pss_kb=kb(rollup, "Pss"),
        anon_kb=kb(rollup, "Anonymous"),
        hwm_kb=kb(status, "VmHWM"),
        threads=int(threads.group(1)) if threads else 0,
    )


def mapped_by_file(pid: int) -> dict[str, int]:
    """RSS (kB) of a process by what is mapped: each shared library, the heap, anonymous."""
    out: dict[str, int] = {}
    name = "?"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
            name = head[5].strip() if len(head) == 6 else "[anonymous]"
        elif line.startswith("Rss:"):
            out[name] = out.get(name, 0) + int(line.split()[1])
    return out


def daemon_config(
    path: Path,
    *,
    workdir: Path,
    broker_port: int,
    devices: dict[str, tuple[str, str]],
    extra: str = "",
) -> Path:
    """A room's TOML: the devices (name: (path, decoder)), MQTT on, console on a free port."""

    lines = [
        '[room]\nid = "bench"',
        f'[console]\nport = 0\n[console.users.{USER}]\npassword_hash = "{hash_password(PASSWORD)}"',
        f'[records]\npath = "{workdir / "bench.sqlite"}"',
        f"[mqtt]\nenabled = true\nport = {broker_port}\ndiscovery = false",
    ]
    lines += [
        f'[devices.{name}]\npath = "{tty}"\ndecoder = "{decoder}"'
        for name, (tty, decoder) in devices.items()
    ]
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


@dataclass
class Daemon:
    process: asyncio.subprocess.Process
    console_url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    async def stop(self, *, timeout_s: float = 20.0) -> int:
        """SIGTERM (a clean shutdown: queued events reach the record), SIGKILL if stuck."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout_s):
                return await self.process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            return await self.process.wait()


async def start_daemon(config: Path, *, workdir: Path, args: Sequence[str] = ()) -> Daemon:
    """`bench/live_daemon.py --config CONFIG ARGS`; returns once its console listens."""
    log = workdir / "daemon.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(DAEMON), "--config", str(config), *args,
            stdout=asyncio.subprocess.PIPE, stderr=err, cwd=workdir, env=env,
            start_new_session=True,
        )  # fmt: skip
    assert process.stdout is not None
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while line := (await process.stdout.readline()).decode():
                if line.startswith("console: "):
                    url = line.split(" ", 1)[1].strip().rstrip("/")
                    # The rest of stdout (device lines) is not needed: let it drain.
                    asyncio.get_running_loop().create_task(_drain(process.stdout))
                    return Daemon(process, url, log)
    except TimeoutError:
        pass
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()
    msg = f"the daemon did not start: {log.read_text(errors='replace')[-2000:]}"
    raise RuntimeError(msg)


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(4096):
        pass


class Console:
    """One signed-in console page: `/ws` messages handed to `on_message(t, message)`."""

    def __init__(self, url: str, on_message: Callable[[float, dict[str, Any]], None]) -> None:
        self.url = url
        self.on_message = on_message
        self.messages = 0
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        # An IP address as the host: the cookie jar must accept its cookie.
        self._session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        try:
            async with self._session.post(
                f"{self.url}/api/login", json={"user": USER, "password": PASSWORD}
            ) as response:
                response.raise_for_status()
            ws = await self._session.ws_connect(f"{self.url}/ws", autoping=True)
        except BaseException:
            await self._session.close()
            raise
        self._task = asyncio.create_task(self._read(ws), name="bench.console")
        return self

    async def get(self, path: str) -> Any:  # noqa: ANN401 - JSON
        """GET one of the console's API paths as the signed-in page does."""
        assert self._session is not None
        async with self._session.get(f"{self.url}{path}") as response:
            response.raise_for_status()
            return await response.json()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            now = time.monotonic()
            self.messages += 1
            self.on_message(now, message.json())

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()
