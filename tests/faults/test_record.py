"""Record faults on the real daemon: the database locked by another process, and a full disk.

Either way the nurse sees `record_fault` within seconds, commands that could not be recorded
are refused with the reason (console 503, MQTT `error`), alarms go on being raised on time,
and once the record can be written again everything buffered meanwhile reaches it: every
alarm transition, and the readings within `[records] buffer_readings` (those dropped past it
are counted in a `record_dropped` event).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import resource
import sqlite3
from typing import TYPE_CHECKING

import pytest

from tests import mosquitto
from tests.faults.harness import (
    Nurse,
    Sessiond,
    alarm,
    publish,
    record,
    start_session,
    write_config,
)
from tests.mosquitto import Mosquitto, listen

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

DESATURATION = """
name = "record-faults"
seed = 5
duration_s = 3600
[patient]
spo2 = 97.5
[[events]]
kind = "desaturation"
at_s = {at}
duration_s = 600
spo2 = 87
ramp_s = 2
"""


def readings_between(db: sqlite3.Connection, lo: float, hi: float) -> list[float]:
    rows = db.execute(
        "SELECT t FROM readings WHERE device = 'spo2' AND t BETWEEN ? AND ? ORDER BY t", (lo, hi)
    )
    return [t for (t,) in rows]


def largest_gap(times: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def count(db: sqlite3.Connection, sql: str) -> int:
    return int(db.execute(sql).fetchone()[0])


async def test_a_locked_database_is_a_record_fault_and_nothing_is_lost(tmp_path: Path):
    """Another process holds the write lock past the busy timeout: record_fault within about
    a second, a note refused at once with the reason, spo2_low still on time, and after the
    lock is gone every reading and transition of the time it was held is in the record."""
    speed, lock_at, desat_at, held_s = 10, 60, 52, 4.0  # the lock: 60-100 s of session
    config = write_config(tmp_path, scenario=DESATURATION.format(at=desat_at))
    path = tmp_path / "record.sqlite"
    async with Sessiond("demo", "--speed", str(speed), "--config", str(config),
                        cwd=tmp_path) as d:  # fmt: skip
        async with Nurse(await d.console_url()) as nurse:
            session_id = await start_session(nurse)
            await nurse.wait(lambda m: m.get("t", 0) >= lock_at, within=20)
            holder = sqlite3.connect(path, timeout=5, isolation_level=None,
                                     check_same_thread=False)  # fmt: skip
            await asyncio.to_thread(holder.execute, "BEGIN IMMEDIATE")
            locked_t = nurse.now()
            loop = asyncio.get_running_loop()
            locked = loop.time()
            fault = await nurse.wait(alarm("record_fault"), within=5)
            noticed_s = loop.time() - locked
            asked = loop.time()
            status, body = await nurse.post("/api/notes", {"text": "checked the line"})
            answered_s = loop.time() - asked
            low = await nurse.wait(alarm("spo2_low"), within=10)
            await asyncio.sleep(max(0.0, held_s - (loop.time() - locked)))  # the other process
            holder.execute("ROLLBACK")
            holder.close()
            unlocked_t = nurse.now()
            cleared = await nurse.wait(alarm("record_fault", "cleared"), within=10)
            status_after, _ = await nurse.post("/api/notes", {"text": "line fine"})
        assert await d.stop() == 0
        d.assert_no_traceback()

    # What the nurse saw.
    assert noticed_s < 2.5, noticed_s
    assert fault["priority"] == "medium"
    assert (status, answered_s < 1.0) == (503, True), (status, body, answered_s)
    assert "the record cannot be written (database is locked)" in body["error"]
    assert "nothing was changed" in body["error"]
    assert desat_at + 15 <= low["t"] <= desat_at + 20, low
    assert low["t"] < unlocked_t  # raised while the record was locked
    assert cleared["t"] >= unlocked_t
    assert status_after == 200
    # The log says it once, and says when it is over.
    assert len(d.lines_matching(r"recorder: cannot write the record")) == 1
    assert len(d.lines_matching(r"recorder: the record is written again")) == 1

    with record(path) as db:
        alarms = db.execute(
            "SELECT alarm_id, state FROM alarms WHERE session_id = ? ORDER BY id", (session_id,)
        ).fetchall()
        assert ("spo2_low", "active") in alarms
        assert alarms.index(("record_fault", "active")) < alarms.index(("record_fault", "cleared"))
        notes = db.execute("SELECT detail FROM actions WHERE action = 'note'").fetchall()
        assert [json.loads(n[0])["text"] for n in notes] == ["line fine"]  # the refused one: not
        # Every line of the locked time is there: a reading a second, no gap.
        times = readings_between(db, locked_t - 5, unlocked_t + 5)
        assert largest_gap(times) < 2.0, times
        assert count(db, "SELECT count(*) FROM events WHERE type = 'record_dropped'") == 0
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.skipif(not mosquitto.available(), reason="mosquitto is not installed")
async def test_a_full_disk_is_a_record_fault_and_the_record_resumes_within_its_bound(
    tmp_path: Path,
):
    """Writes fail (a file-size limit of one byte: every write past it fails, as on a full
    disk) for 5 s at 30x: record_fault, MQTT commands refused with an `error`, spo2_low on
    time; when space is back the buffered readings are written, the ones past the 100-reading
    bound counted in `record_dropped`, and no alarm transition is missing."""
    speed, full_at, desat_at, full_s = 30, 90, 95, 5.0
    with Mosquitto(tmp_path) as broker:
        config = write_config(
            tmp_path,
            scenario=DESATURATION.format(at=desat_at),
            records="buffer_readings = 100\n",
            extra=f"[mqtt]\nenabled = true\nport = {broker.port}\ndiscovery = false\n",
        )
        path = tmp_path / "record.sqlite"
        async with (
            listen(broker.port, "sessiond/room-f/event") as heard,
            Sessiond("demo", "--speed", str(speed), "--config", str(config), cwd=tmp_path) as d,
        ):
            async with Nurse(await d.console_url()) as nurse:
                session_id = await start_session(nurse)
                await nurse.wait(lambda m: m.get("t", 0) >= full_at, within=20)
                _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
                resource.prlimit(d.pid, resource.RLIMIT_FSIZE, (1, hard))
                full_t = nurse.now()
                loop = asyncio.get_running_loop()
                full = loop.time()
                await nurse.wait(alarm("record_fault"), within=5)
                noticed_s = loop.time() - full
                mark = heard.mark()
                await publish(broker.port, "sessiond/room-f/cmd/note",
                           b'{"user": "ana", "text": "x"}')  # fmt: skip
                refused = await heard.wait_for(
                    "sessiond/room-f/event", lambda m: m.json().get("type") == "error", after=mark
                )
                low = await nurse.wait(alarm("spo2_low"), within=10)
                await asyncio.sleep(max(0.0, full_s - (loop.time() - full)))  # the disk is full
                resource.prlimit(d.pid, resource.RLIMIT_FSIZE, (hard, hard))
                freed_t = nurse.now()
                cleared = await nurse.wait(alarm("record_fault", "cleared"), within=10)
            assert await d.stop() == 0
            d.assert_no_traceback()

    assert noticed_s < 2.0, noticed_s
    assert refused.json()["command"] == "note"
    assert "the record cannot be written" in refused.json()["error"]
    assert desat_at + 15 <= low["t"] <= desat_at + 25, low
    assert full_t < low["t"] < freed_t
    assert cleared["t"] >= freed_t
    with record(path) as db:
        rows = db.execute(
            "SELECT t, alarm_id, priority, state FROM alarms WHERE session_id = ? ORDER BY id",
            (session_id,),
        ).fetchall()
        # Every transition the nurse saw, the ones while the disk was full included.
        seen = [a[:4] for a in nurse.alarms()]
        assert [(round(r[0], 3), *r[1:]) for r in rows] == seen  # the page gets t to 1 ms
        (dropped,) = db.execute(
            "SELECT data FROM events WHERE type = 'record_dropped'").fetchall()  # fmt: skip
        lost = json.loads(dropped[0])
        # ~150 readings came while writes failed; 100 waited, the rest were dropped, oldest first.
        assert lost["readings"] > 0
        assert full_t - 5 <= lost["since_t"] <= lost["until_t"] <= freed_t + 5
        times = readings_between(db, full_t - 30, freed_t + 30)
        inside = [t for t in times if lost["since_t"] <= t <= lost["until_t"]]
        assert not inside  # exactly the dropped span is missing ...
        missing = round(largest_gap(times))  # ... and only it
        assert abs(missing - lost["readings"]) <= 2, (missing, lost)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
