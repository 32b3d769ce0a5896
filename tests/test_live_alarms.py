"""The live daemon on the simulator over real pseudo-terminals: the BP re-measure is sent, the
first BP after a start is not lost to the probe, and a kill -9 forgets no alarm.

`sessiond sim` (at 10x, so a BP measurement takes a few seconds) and `sessiond run` (real
time) are separate processes, as on a bench; the console's WebSocket shows what a nurse sees.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from sessiond.console.auth import hash_password
from tests.test_run_sim import QUIET_AUDIO, line_starting, process, stop

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.e2e

#: A patient whose BP closes the dose gate (>= 180/110) and confirms bp_high high.
SCENARIO = """
name = "high_baseline_bp"
description = "Resting BP 195/118 from the start."
seed = 3
duration_s = 3600
[patient]
spo2 = 97.5
pr = 76
pi = 3.0
resp_rate_per_min = 14
sys = 195
dia = 118
"""


async def next_event(
    ws: aiohttp.ClientWebSocketResponse, wanted: Callable[[dict[str, Any]], bool], seen: list[Any]
) -> dict[str, Any]:
    async with asyncio.timeout(60):
        async for msg in ws:
            event: dict[str, Any] = json.loads(msg.data)
            seen.append(event)
            if wanted(event):
                return event
    pytest.fail(f"the WebSocket closed; seen: {seen[-5:]}")


def alarm(alarm_id: str, priority: str) -> Callable[[dict[str, Any]], bool]:
    def wanted(e: dict[str, Any]) -> bool:
        return (
            e.get("type") == "alarm"
            and e.get("id") == alarm_id
            and e.get("priority") == priority
            and e.get("state") == "active"
        )

    return wanted


def bp_reading(e: dict[str, Any]) -> bool:
    return e.get("type") == "reading" and e.get("device") == "nibp" and "sys" in e


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def room_config(tmp_path: Path, *, spo2: str, nibp: str, records: Path) -> Path:
    """Both devices on the simulator's ptys, a quick baseline BP schedule (every 12 s)."""
    config = tmp_path / "room.toml"
    config.write_text(
        f"[console]\nport = 0\n"
        f"[console.users.ana]\npassword_hash = '{hash_password('pw', iterations=1000)}'\n"
        f"[devices.spo2]\npath = '{spo2}'\ndecoder = 'masimo-ascii1'\n"
        f"[devices.nibp]\npath = '{nibp}'\ndecoder = 'suntech-advantage'\n"
        f"[nibp]\nbaseline_interval_min = 0.2\n"
        f"[records]\npath = '{records}'\n{QUIET_AUDIO}"
    )
    return config


async def test_bp_alarms_remeasure_and_survive_a_kill(tmp_path: Path) -> None:
    scenario = write(tmp_path / "high_bp.toml", SCENARIO)
    records = tmp_path / "r.sqlite"
    devices = "spo2=masimo-ascii1,nibp=suntech-advantage"
    async with process("sim", "--speed", "10", "--scenario", str(scenario), "--devices",
                       devices, cwd=tmp_path) as sim:  # fmt: skip
        spo2 = (await line_starting(sim, "spo2 ")).split()[1]
        nibp = (await line_starting(sim, "nibp ")).split()[1]
        config = room_config(tmp_path, spo2=spo2, nibp=nibp, records=records)
        jar = aiohttp.CookieJar(unsafe=True)
        seen: list[Any] = []
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with process("run", "--config", str(config), cwd=tmp_path) as first:
                base = (await line_starting(first, "console: ")).split()[1].rstrip("/")
                r = await http.post(f"{base}/api/login", json={"user": "ana", "password": "pw"})
                assert r.status == 200
                async with http.ws_connect(f"{base}/ws") as ws:
                    # Started right after the daemon: the probe of the new port must not eat
                    # the first baseline measurement (no device_lost, a reading comes).
                    r = await http.post(f"{base}/api/session/start", json={"route": "iv"})
                    assert r.status == 200
                    first_bp = await next_event(ws, bp_reading, seen)
                    await next_event(ws, alarm("dose_gate", "high"), seen)
                    # bp_high medium asks for a re-measure at once; it confirms the high.
                    second_bp = await next_event(ws, bp_reading, seen)
                    high = await next_event(ws, alarm("bp_high", "high"), seen)
                assert second_bp["t"] - first_bp["t"] < 10  # not one interval (12 s) later
                assert high["t"] == second_bp["t"]
                assert not [e for e in seen if e.get("id") == "device_lost"]
                # A nurse's note is answered once the record holds everything before it: the
                # crash comes after the high is on disk (the page shows an alarm before its
                # record is committed; a crash in between is the next reading's to confirm).
                r = await http.post(f"{base}/api/notes", json={"text": "BP 195/118 confirmed"})
                assert r.status == 200, await r.text()
                os.killpg(first.pid, signal.SIGKILL)  # a crash: no shutdown code runs
                await first.wait()
            async with process("run", "--config", str(config), cwd=tmp_path) as second:
                base = (await line_starting(second, "console: ")).split()[1].rstrip("/")
                r = await http.post(f"{base}/api/login", json={"user": "ana", "password": "pw"})
                assert r.status == 200
                status = await (await http.get(f"{base}/api/status")).json()
                shown = {a["id"]: (a["priority"], a["state"]) for a in status["alarms"]}
                assert shown["dose_gate"] == ("high", "active")
                assert shown["bp_high"][0] == "high"
                # The gate holds after the restart: a dose needs the override reason.
                r = await http.post(f"{base}/api/session/dose", json={})
                assert r.status == 409
                assert "dose_gate" in (await r.json())["error"]
                # The resumed session measures on its schedule once the port is open.
                resumed_t = status["t"]
                async with http.ws_connect(f"{base}/ws") as ws:
                    after: list[Any] = []
                    reading = await next_event(ws, bp_reading, after)
                assert not [e for e in after if e.get("type") == "nibp_failed"]
                r = await http.post(f"{base}/api/session/dose", json={"reason": "prescriber ok"})
                assert r.status == 200
                assert await stop(second) == 0
        assert await stop(sim) == 0
    assert reading["t"] >= resumed_t - 1
    check_record(records)


def check_record(records: Path) -> None:
    """One time axis, one gap, nothing backdated, no device lost."""
    db = sqlite3.connect(records)
    # One time axis: the resumed run's times continue the first run's.
    first_t = db.execute("SELECT min(t) FROM readings").fetchone()[0]
    ts = [t for (t,) in db.execute("SELECT t FROM readings WHERE device = 'nibp' ORDER BY id")]
    assert ts == sorted(ts)
    assert first_t >= 0
    gaps = db.execute("SELECT t FROM events WHERE type = 'gap'").fetchall()
    assert len(gaps) == 1
    overdue = db.execute(
        "SELECT t FROM alarms WHERE alarm_id = 'nibp_overdue' AND t < ?", (gaps[0][0],)
    ).fetchall()
    assert overdue == []  # nothing backdated into the time the daemon was down
    lost = db.execute("SELECT count(*) FROM alarms WHERE alarm_id = 'device_lost'").fetchone()
    assert lost == (0,)
