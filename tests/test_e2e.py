"""End to end: `sessiond demo` as a process — simulator on a pty, daemon, console, SQLite.

A scaled-time desaturation must reach the console's WebSocket as a `spo2_low` alarm and the
record as an alarm row attributed to the session the nurse started through the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from tests.test_run_sim import line_starting, process

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.e2e

SPEED = 30  # one session minute in two seconds
SCENARIO = """
name = "e2e"
seed = 7
duration_s = 3600
[patient]
spo2 = 97.5
pr = 72
pi = 3.0
resp_rate_per_min = 14
[[events]]
kind = "desaturation"
at_s = 150
duration_s = 300                  # long enough that the alarm is still up when acknowledged
spo2 = 86
ramp_s = 3
"""


@contextlib.asynccontextmanager
async def demo(tmp_path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    (tmp_path / "e2e.toml").write_text(SCENARIO)
    config = tmp_path / "room.toml"
    config.write_text(
        f"[room]\nid = 'room-e2e'\n[console]\nport = 0\n"
        f"[records]\npath = '{tmp_path / 'records.sqlite'}'\n"
        f"[sim]\nscenario = '{tmp_path / 'e2e.toml'}'\n"
    )
    async with process("demo", "--speed", str(SPEED), "--config", str(config),
                       cwd=tmp_path) as proc:  # fmt: skip
        yield proc


async def console_url(proc: asyncio.subprocess.Process) -> str:
    return (await line_starting(proc, "console: ")).split()[1].rstrip("/")


async def next_matching(ws: aiohttp.ClientWebSocketResponse, predicate) -> dict[str, Any]:
    async for msg in ws:
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        data: dict[str, Any] = json.loads(msg.data)
        if predicate(data):
            return data
    pytest.fail("the WebSocket closed")


async def confirm_predose_checklist(http: aiohttp.ClientSession, base: str) -> None:
    """The dose needs the pre-dose checklist (or an override with a reason): confirm it."""
    r = await http.post(f"{base}/api/session/dose", json={})
    assert r.status == 409
    assert "pre-dose checklist" in (await r.json())["error"]
    items = (await (await http.get(f"{base}/api/status")).json())["checklist_items"]
    checked = [item["id"] for item in items["predose"]]
    r = await http.post(f"{base}/api/checklists", json={"kind": "predose", "checked": checked})
    assert r.status == 200, await r.text()


async def test_desaturation_reaches_console_and_record(tmp_path):
    async with demo(tmp_path) as proc:
        base = await console_url(proc)
        # unsafe=True: keep the sign-in cookie of an IP-address host (127.0.0.1).
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            # Mutations need a signed-in user.
            r = await http.post(f"{base}/api/session/start", json={"route": "iv"})
            assert r.status == 401
            r = await http.post(f"{base}/api/login", json={"user": "nurse", "password": "demo"})
            assert r.status == 200
            async with http.ws_connect(f"{base}/ws") as ws:
                first = await next_matching(ws, lambda d: True)
                assert first["type"] == "status"
                r = await http.post(f"{base}/api/session/start", json={"route": "iv"})
                assert r.status == 200, await r.text()
                session_id = (await r.json())["session_id"]
                await confirm_predose_checklist(http, base)
                r = await http.post(f"{base}/api/session/dose", json={})
                assert r.status == 200, await r.text()
                async with asyncio.timeout(60):
                    onset = await next_matching(ws, lambda d: d.get("type") == "phase"
                                                and d["phase"] == "onset")  # fmt: skip
                    reading = await next_matching(ws, lambda d: d.get("type") == "reading")
                    alarm = await next_matching(
                        ws, lambda d: d.get("type") == "alarm" and d["id"] == "spo2_low"
                    )
                r = await http.post(f"{base}/api/alarms/ack", json={"id": "spo2_low"})
                assert r.status == 200, await r.text()
                r = await http.post(f"{base}/api/session/end", json={})
                assert r.status == 200, await r.text()
                async with asyncio.timeout(30):
                    await next_matching(ws, lambda d: d.get("phase") == "ended")
        assert onset["phase"] == "onset"
        assert reading["device"] == "spo2"
        assert 80 <= reading["spo2"] <= 100
        assert alarm["state"] == "active"
        assert alarm["value"] < 90
        # The 15 s delay runs on session time: the alarm comes 15 s after SpO2 first fell
        # below 90, not before the desaturation started.
        assert alarm["t"] >= 150 + 15
        os.killpg(proc.pid, signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await proc.wait() == 0

    db = sqlite3.connect(tmp_path / "records.sqlite")
    rows = db.execute(
        "SELECT session_id, priority, state, value, limit_value FROM alarms "
        "WHERE alarm_id = 'spo2_low' ORDER BY t").fetchall()  # fmt: skip
    assert rows[0] == (session_id, alarm["priority"], "active", alarm["value"], alarm["limit"])
    actions = db.execute("SELECT action, user, source FROM actions ORDER BY t").fetchall()
    assert actions == [
        ("session_start", "nurse", "console"),
        ("checklist", "nurse", "console"),
        ("dose", "nurse", "console"),
        ("ack", "nurse", "console"),
        ("session_end", "nurse", "console"),
    ]
    dose_t, ended_t = db.execute(
        "SELECT dose_t, ended_t FROM sessions WHERE id = ?", (session_id,)
    ).fetchone()
    assert dose_t is not None
    assert ended_t > dose_t
    (n,) = db.execute("SELECT count(*) FROM readings WHERE device = 'spo2'").fetchone()
    assert n >= 150
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
