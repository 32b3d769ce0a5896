"""`sessiond sim` and `sessiond run` as separate processes, as on a bench with real hardware.

The simulator prints its pseudo-terminal; the daemon opens that path as it would open
`/dev/serial/by-id/...`, records every byte to a capture, and the capture replays.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

pytestmark = pytest.mark.e2e

#: The daemons here write to a stderr pipe that is read only on failure; libvlc on a machine
#: without a sound card logs ALSA errors many times a second, which would fill it and block
#: the daemon. The room's alarm speaker plays to the null device instead.
QUIET_AUDIO = "[alarm_audio]\nvlc_args = ['--aout=alsa', '--alsa-audio-device=null', '--quiet']\n"


#: Where each started process writes its log (by pid): a file, not a pipe, so that a chatty
#: process never blocks on a full pipe nobody reads (and `wait()` never waits for a reader).
_LOGS: dict[int, Path] = {}


@contextlib.asynccontextmanager
async def process(*args: str, cwd: Path):
    log = cwd / f"{args[0]}-{len(_LOGS)}.log"
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sessiond", *args, stdout=asyncio.subprocess.PIPE,
            stderr=stderr, cwd=cwd, start_new_session=True,
        )  # fmt: skip
    _LOGS[proc.pid] = log
    try:
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


def log_of(proc: asyncio.subprocess.Process) -> str:
    """What the process logged so far (its stderr)."""
    return _LOGS[proc.pid].read_text(errors="replace")


async def line_starting(proc: asyncio.subprocess.Process, prefix: str) -> str:
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while line := (await proc.stdout.readline()).decode():
            if line.startswith(prefix):
                return line.strip()
    pytest.fail(f"no line starting {prefix!r}: {log_of(proc)[-2000:]}")


async def stop(proc: asyncio.subprocess.Process) -> int:
    os.killpg(proc.pid, signal.SIGTERM)
    async with asyncio.timeout(20):
        return await proc.wait()


async def test_daemon_on_the_simulators_port_records_a_capture_that_replays(tmp_path):
    sim_capture, run_capture = tmp_path / "sim.cap", tmp_path / "run.cap"
    async with process("sim", "--speed", "5", "--capture", str(sim_capture), cwd=tmp_path) as sim:
        port = (await line_starting(sim, "spo2 ")).split()[1]
        assert port.startswith("/dev/pts/")
        config = tmp_path / "room.toml"
        from sessiond.console.auth import hash_password  # noqa: PLC0415

        config.write_text(
            f"[console]\nport = 0\n"
            f"[console.users.ana]\npassword_hash = '{hash_password('pw', iterations=1000)}'\n"
            f"[devices.spo2]\npath = '{port}'\n"
            f"[records]\npath = '{tmp_path / 'r.sqlite'}'\n{QUIET_AUDIO}"
        )
        async with process("run", "--config", str(config), "--capture", str(run_capture),
                           cwd=tmp_path) as run:  # fmt: skip
            base = (await line_starting(run, "console: ")).split()[1].rstrip("/")
            # Viewing needs a sign-in (vitals are health data).
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as http:
                r = await http.post(f"{base}/api/login", json={"user": "ana", "password": "pw"})
                assert r.status == 200
                async with http.ws_connect(f"{base}/ws") as ws, asyncio.timeout(30):
                    async for msg in ws:
                        event = json.loads(msg.data)
                        if event["type"] == "reading":
                            break
            assert event["device"] == "spo2"
            assert 85 <= event["spo2"] <= 100
            assert await stop(run) == 0
        assert await stop(sim) == 0

    for cap in (sim_capture, run_capture):
        lines = cap.read_text().splitlines()
        assert lines[:2] == ["# sessiond-capture 1", "# port spo2 masimo-ascii1"], cap
        assert any(" spo2 < " in line for line in lines[2:]), cap
        replayed = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sessiond", "replay", str(cap), "--readings",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await replayed.communicate()
        assert replayed.returncode == 0, err.decode()
        events = [json.loads(x) for x in out.decode().splitlines()]
        assert events[-1]["type"] == "summary"
        assert events[-1]["readings"] >= 1
        assert events[-1]["frames_bad"] == 0


async def test_a_crashed_daemon_resumes_its_session_where_the_timeline_is(tmp_path):
    """SIGKILL after the dose: the restarted daemon has the session, route and dose time."""
    from sessiond.console.auth import hash_password  # noqa: PLC0415

    records = tmp_path / "r.sqlite"
    async with process("sim", "--speed", "1", cwd=tmp_path) as sim:
        port = (await line_starting(sim, "spo2 ")).split()[1]
        config = tmp_path / "room.toml"
        config.write_text(
            f"[room]\nid = 'room-9'\n[console]\nport = 0\n"
            f"[console.users.ana]\npassword_hash = '{hash_password('pw', iterations=1000)}'\n"
            f"[devices.spo2]\npath = '{port}'\n[records]\npath = '{records}'\n{QUIET_AUDIO}"
        )
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with process("run", "--config", str(config), cwd=tmp_path) as first:
                base = (await line_starting(first, "console: ")).split()[1].rstrip("/")
                r = await http.post(f"{base}/api/login", json={"user": "ana", "password": "pw"})
                assert r.status == 200
                r = await http.post(f"{base}/api/session/start", json={"route": "im"})
                session_id = (await r.json())["session_id"]
                r = await http.post(f"{base}/api/session/dose", json={"reason": "checked on paper"})
                assert r.status == 200
                os.killpg(first.pid, signal.SIGKILL)  # a crash: no shutdown code runs
                await first.wait()
            async with process("run", "--config", str(config), cwd=tmp_path) as second:
                base = (await line_starting(second, "console: ")).split()[1].rstrip("/")
                # A restarted daemon forgot every sign-in.
                r = await http.post(f"{base}/api/login", json={"user": "ana", "password": "pw"})
                assert r.status == 200
                status = await (await http.get(f"{base}/api/status")).json()
                assert await stop(second) == 0
        assert await stop(sim) == 0
    session = status["session"]
    assert (session["id"], session["route"]) == (session_id, "im")
    assert status["phase"] == "onset"
    assert 0 <= session["seconds_since_dose"] < 30
    assert session["seconds_since_start"] >= session["seconds_since_dose"]
    import sqlite3  # noqa: PLC0415

    db = sqlite3.connect(records)
    actions = db.execute("SELECT action, user FROM actions ORDER BY id").fetchall()
    assert actions == [("session_start", "ana"), ("dose", "ana"), ("session_resume", "sessiond")]
