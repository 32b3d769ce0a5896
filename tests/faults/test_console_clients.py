"""Console clients that misbehave, against the real daemon: a stuck browser and a flood.

Every WebSocket has its own bounded queue (DESIGN §2: a slow subscriber never blocks the
monitor), so one that stops reading and a hundred more that connect at once change nothing
for the nurse's own page, the alarms or the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest
from yarl import URL

from sessiond.config import ConsoleConfig
from sessiond.console.server import COOKIE_NAME
from tests.faults.harness import Nurse, Sessiond, alarm, record, start_session, write_config

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

pytestmark = pytest.mark.e2e

SPEED = 20
DESAT = 60
FLOOD = 100
SCENARIO = f"""
name = "console-clients"
seed = 8
duration_s = 3600
[[events]]
kind = "desaturation"
at_s = {DESAT}
duration_s = 600
spo2 = 87
ramp_s = 2
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    msg = f"no VmRSS for {pid}"
    raise AssertionError(msg)


@contextlib.contextmanager
def stuck_browser(base: str, cookie: str) -> Iterator[socket.socket]:
    """A signed-in WebSocket that is opened, then never read: a tiny receive buffer fills."""
    url = URL(base)
    assert url.host is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.settimeout(5)
    sock.connect((url.host, url.port or 80))
    sock.sendall(
        f"GET /ws HTTP/1.1\r\nHost: {url.host}:{url.port}\r\nUpgrade: websocket\r\n"
        f"Cookie: {COOKIE_NAME}={cookie}\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert sock.recv(12) == b"HTTP/1.1 101"
    try:
        yield sock
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def flood(
    base: str, count: int, cookie: str | None
) -> AsyncIterator[tuple[list[int], list[int]]]:
    """`count` more pages open at once, each reading everything (signed in with `cookie`, or
    anonymous); yields the messages each page received and the HTTP refusals."""
    received = [0] * count
    refused: list[int] = []

    async def page(http: aiohttp.ClientSession, i: int) -> None:
        try:
            async with http.ws_connect(f"{base}/ws") as ws:
                async for _ in ws:
                    received[i] += 1
        except aiohttp.WSServerHandshakeError as exc:
            refused.append(exc.status)

    cookies = None if cookie is None else {COOKIE_NAME: cookie}
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar, cookies=cookies) as http:
        tasks = [asyncio.create_task(page(http, i)) for i in range(count)]
        try:
            yield received, refused
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_stuck_page_and_a_flood_of_pages_change_nothing_for_the_nurse(tmp_path: Path):
    """One page stuck, a hundred more signed in and a hundred anonymous: the nurse's page gets
    spo2_low on time and readings without a gap; pages up to the socket cap get messages, the
    rest are refused (503), anonymous ones 401; the record misses nothing, memory is bounded."""
    config = write_config(tmp_path, scenario=SCENARIO)
    args = ("demo", "--speed", str(SPEED), "--config", str(config))
    async with Sessiond(*args, cwd=tmp_path) as d:
        base = await d.console_url()
        async with Nurse(base) as nurse:
            session_id = await start_session(nurse)
            before = rss_kib(d.pid)
            assert nurse.http is not None
            cookie = nurse.http.cookie_jar.filter_cookies(URL(base))[COOKIE_NAME].value
            with stuck_browser(base, cookie):
                async with (
                    flood(base, FLOOD, cookie) as (received, refused),
                    flood(base, FLOOD, None) as (anonymous, refused_anonymous),
                ):
                    mark = len(nurse.seen)
                    low = await nurse.wait(alarm("spo2_low"), within=20)
                    await nurse.wait(lambda m: m.get("t", 0) >= low["t"] + 20, within=10)
                    grown_kib = rss_kib(d.pid) - before
            readings = [m["t"] for m in nurse.seen[mark:] if m.get("type") == "reading"]
        assert await d.stop() == 0
        d.assert_no_traceback()

    assert DESAT + 15 <= low["t"] <= DESAT + 22, low
    assert max(b - a for a, b in itertools.pairwise(readings)) < 2.5, readings
    admitted = [n for n in received if n > 0]
    cap = ConsoleConfig().max_websockets
    assert 0 < len(admitted) <= cap - 2  # the nurse's page and the stuck one count too
    assert refused == [503] * (FLOOD - len(admitted)), refused
    assert (sum(anonymous), refused_anonymous) == (0, [401] * FLOOD)
    assert grown_kib < 50_000, grown_kib
    with record(tmp_path / "record.sqlite") as db:
        times = [t for (t,) in db.execute(
            "SELECT t FROM readings WHERE device = 'spo2' AND session_id = ? ORDER BY t",
            (session_id,))]  # fmt: skip
        assert max(b - a for a, b in itertools.pairwise(times)) < 2.0
        assert ("spo2_low", "active") in db.execute("SELECT alarm_id, state FROM alarms").fetchall()
