"""SIGKILL mid-session and a restart, at 1x and at 60x: what a crash may cost the record.

DESIGN §10: a crash loses at most the last second of readings (session time, whatever the
speed) and no alarm transition or nurse action. The restarted daemon resumes the session on
one continuous time axis, and the database passes `PRAGMA integrity_check`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.faults.harness import Nurse, Sessiond, alarm, record, start_session, write_config

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

SCENARIO = """
name = "restart"
seed = 9
duration_s = 7200
[patient]
spo2 = 97.5
[[events]]
kind = "desaturation"
at_s = {at}
duration_s = 3600
spo2 = 87
ramp_s = 2
"""


@pytest.mark.parametrize(("speed", "kill_at"), [(1, 6.0), (60, 150.0)], ids=["1x", "60x"])
async def test_sigkill_loses_at_most_a_second_and_the_session_resumes(
    tmp_path: Path, speed: int, kill_at: float
):
    """Killed right after a reading and an alarm reached the console: the record has them
    (readings to within 1 s of session time), the session resumes where it stopped."""
    desat_at = max(0.0, kill_at - 20) if speed > 1 else 1000.0
    config = write_config(tmp_path, scenario=SCENARIO.format(at=desat_at))
    args = ("demo", "--speed", str(speed), "--config", str(config))
    async with (
        Sessiond(*args, cwd=tmp_path) as first,
        Nurse(await first.console_url()) as nurse,
    ):
        session_id = await start_session(nurse)
        if speed > 1:
            raised = await nurse.wait(alarm("spo2_low"), within=20)
        last = await nurse.wait(
            lambda m: m.get("type") == "reading" and m["t"] >= kill_at, within=20
        )
        first.kill()  # right after the console showed it: a crash, no shutdown code
        await first.exited()
        shown = [round(m["t"], 3) for m in nurse.seen if m.get("type") == "reading"]
    with record(tmp_path / "record.sqlite") as db:
        (last_recorded,) = db.execute("SELECT max(t) FROM readings").fetchone()
        recorded = {round(t, 3) for (t,) in db.execute("SELECT t FROM readings")}
        alarms = db.execute("SELECT t, alarm_id, state FROM alarms").fetchall()
        actions = [a for (a,) in db.execute("SELECT action FROM actions ORDER BY id")]
        (speed_recorded,) = db.execute(
            "SELECT speed FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
    # The kill came after `last` was shown: every reading a second older than it is recorded.
    older = [t for t in shown if t <= last["t"] - 1.0]
    assert len(older) >= 3
    assert set(older) <= recorded, sorted(set(older) - recorded)
    assert actions == ["session_start", "checklist", "dose"]
    if speed > 1:
        assert (round(raised["t"], 3), "spo2_low", "active") in [
            (round(t, 3), a, s) for t, a, s in alarms
        ]
    assert speed_recorded == speed

    async with Sessiond(*args, cwd=tmp_path) as second:
        async with Nurse(await second.console_url()) as nurse:
            status = next(m for m in nurse.seen if m.get("type") == "status")
            resumed = await nurse.wait(lambda m: m.get("type") == "reading", within=20)
        assert await second.stop() == 0
        second.assert_no_traceback()
    assert status["session"]["id"] == session_id
    # One time axis: the resumed session goes on from where the record stopped, never back.
    assert resumed["t"] > last_recorded
    assert resumed["t"] - last_recorded < (10.0 if speed == 1 else 60.0)
    with record(tmp_path / "record.sqlite") as db:
        gaps = db.execute("SELECT t, data FROM events WHERE type = 'gap'").fetchall()
        assert len(gaps) == 1
        times = [t for (t,) in db.execute("SELECT t FROM readings ORDER BY id")]
        assert times == sorted(times)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT speed FROM sessions").fetchall() == [(speed,)]
