"""The live daemon keeps an infusion across a kill -9: `sessiond sim` and `sessiond run` as
processes, the console's API as a nurse uses it, and the record read afterwards."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from sessiond.config import Config
from sessiond.console.auth import hash_password
from tests.test_run_sim import line_starting, process, stop

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e


async def signed_in(http: aiohttp.ClientSession, run: Any) -> str:
    base = (await line_starting(run, "console: ")).split()[1].rstrip("/")
    r = await http.post(f"{base}/api/login", json={"user": "ana", "password": "pw"})
    assert r.status == 200
    return base


async def status(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    data: dict[str, Any] = await (await http.get(f"{base}/api/status")).json()
    return data


async def test_a_paused_infusion_survives_a_kill(tmp_path: Path) -> None:
    records = tmp_path / "r.sqlite"
    async with process("sim", "--speed", "10", cwd=tmp_path) as sim:
        spo2 = (await line_starting(sim, "spo2 ")).split()[1]
        nibp = (await line_starting(sim, "nibp ")).split()[1]
        config = tmp_path / "room.toml"
        config.write_text(
            f"[console]\nport = 0\n"
            f"[console.users.ana]\npassword_hash = '{hash_password('pw', iterations=1000)}'\n"
            f"[devices.spo2]\npath = '{spo2}'\ndecoder = 'masimo-ascii1'\n"
            f"[devices.nibp]\npath = '{nibp}'\ndecoder = 'suntech-advantage'\n"
            f"[records]\npath = '{records}'\n"
        )
        plan = {"amount": 0.5, "unit": "mg/kg", "planned_min": 40}
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with process("run", "--config", str(config), cwd=tmp_path) as first:
                base = await signed_in(http, first)
                r = await http.post(f"{base}/api/session/start", json={"route": "iv"})
                assert r.status == 200
                ticked = {"kind": "predose", "checked": [i.id for i in Config().checklists.predose]}
                r = await http.post(f"{base}/api/checklists", json=ticked)
                assert r.status == 200, await r.text()
                r = await http.post(f"{base}/api/infusion/start", json=plan)
                assert r.status == 200, await r.text()
                r = await http.post(f"{base}/api/infusion/pause", json={"reason": "nausea"})
                assert r.status == 200, await r.text()
                before = await status(http, base)
                os.killpg(first.pid, signal.SIGKILL)  # a crash: no shutdown code runs
                await first.wait()
            async with process("run", "--config", str(config), cwd=tmp_path) as second:
                base = await signed_in(http, second)
                after = await status(http, base)
                infusion = after["infusion"]
                assert after["phase"] == "onset"
                assert infusion["state"] == "paused"
                assert (infusion["planned_amount"], infusion["unit"], infusion["planned_min"]) == (
                    0.5, "mg/kg", 40.0)  # fmt: skip
                assert infusion["started_t"] == pytest.approx(before["infusion"]["started_t"])
                assert after["session"]["dose_t"] == pytest.approx(infusion["started_t"])
                assert [p["until_t"] for p in infusion["pauses"]] == [None]
                assert after["nibp_schedule"]["infusion_interval_min"] == 10.0
                # A pause is answered "already paused": the resumed monitor knows its state.
                r = await http.post(f"{base}/api/infusion/pause", json={"reason": "x"})
                assert (r.status, (await r.json())["error"]) == (
                    409, "the infusion is already paused")  # fmt: skip
                r = await http.post(f"{base}/api/session/end", json={})
                assert r.status == 409  # not while it runs
                r = await http.post(f"{base}/api/infusion/resume", json={"reason": "better"})
                assert r.status == 200
                r = await http.post(f"{base}/api/infusion/stop", json={"amount": 0.45})
                assert r.status == 200
                done = (await status(http, base))["infusion"]
                assert (done["state"], done["given_amount"], done["given_unit"]) == (
                    "stopped", 0.45, "mg/kg")  # fmt: skip
                r = await http.post(f"{base}/api/session/end", json={})
                assert r.status == 200
                assert await stop(second) == 0
        assert await stop(sim) == 0
    check_record(records)


def check_record(records: Path) -> None:
    """Every step in order, attributed, with its numbers; one session with its dose."""
    db = sqlite3.connect(records)
    rows = db.execute("SELECT action, user, detail FROM actions ORDER BY id").fetchall()
    assert [a for a, _, _ in rows] == [
        "session_start", "checklist", "dose", "infusion_start", "infusion_pause", "session_resume",
        "infusion_resume", "infusion_stop", "session_end",
    ]  # fmt: skip
    details = {a: json.loads(d) for a, _, d in rows}
    assert details["infusion_start"] == {"planned_amount": 0.5, "unit": "mg/kg",
                                         "planned_min": 40.0}  # fmt: skip
    assert details["infusion_pause"]["reason"] == "nausea"
    assert details["infusion_stop"]["given_amount"] == 0.45
    assert details["infusion_stop"]["pauses"] == 1
    assert {u for a, u, _ in rows if a.startswith("infusion")} == {"ana"}
    assert db.execute("SELECT count(*) FROM sessions WHERE dose_t IS NOT NULL").fetchone() == (1,)
