"""Device faults on the real daemon: `sessiond demo` with its simulator on real pseudo-terminals.

One scenario at 10x plays, in turn, the oximeter's cable pulled and plugged back in, line noise,
the oximeter going silent with its port open, and the BP module going silent while the patient
desaturates. The nurse's console, the MQTT `event` topic and the record are checked for each.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from tests import mosquitto
from tests.faults.harness import Nurse, Sessiond, alarm, record, start_session, write_config
from tests.mosquitto import Mosquitto, listen

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not mosquitto.available(), reason="mosquitto is not installed"),
]

# At most 10x: above it the device timeouts stretch to 0.5 s of real time
# (`LoopClock.device_timeout`), and this test checks the 5 s of DESIGN §5.
SPEED = 10
PULL, SILENT, SILENT_END = 90, 180, 220  # oximeter: cable out 90-105 s, silent 180-220 s
NOISE = 130  # 20 bytes of noise before every line 130-150 s, while SpO2 falls below 90
BP_SILENT, BP_SILENT_END = 240, 290  # the BP module answers nothing
DESAT = 250  # SpO2 to 80 %: spo2_low high at once, while the BP module is lost
SCENARIO = f"""
name = "device-faults"
seed = 11
duration_s = 3600
[patient]
spo2 = 97.5
[[events]]
kind = "cable_pull"
at_s = {PULL}
duration_s = 15
port = "spo2"
[[events]]
kind = "garbage"
at_s = {NOISE}
duration_s = 20
bytes = 20
port = "spo2"
[[events]]
kind = "desaturation"
at_s = {NOISE}
duration_s = 30
spo2 = 87
ramp_s = 2
[[events]]
kind = "silence"
at_s = {SILENT}
duration_s = {SILENT_END - SILENT}
port = "spo2"
[[events]]
kind = "silence"
at_s = {BP_SILENT}
duration_s = {BP_SILENT_END - BP_SILENT}
port = "nibp"
[[events]]
kind = "desaturation"
at_s = {DESAT}
duration_s = 60
spo2 = 80
ramp_s = 2
"""


def within(t: float, lo: float, hi: float) -> bool:
    return lo <= t <= hi


async def test_device_faults_are_shown_with_their_device_and_monitoring_goes_on(tmp_path: Path):
    """Unplug, noise, a silent oximeter and a silent BP module: each alarm on time, once,
    naming its device; SpO2 alarms still on time meanwhile; the record holds every one."""
    with Mosquitto(tmp_path) as broker:
        config = write_config(
            tmp_path,
            scenario=SCENARIO,
            extra=f"[mqtt]\nenabled = true\nport = {broker.port}\ndiscovery = false\n",
        )
        async with (
            listen(broker.port, "sessiond/room-f/event", "sessiond/room-f/state") as heard,
            Sessiond("demo", "--speed", str(SPEED), "--config", str(config), cwd=tmp_path) as d,
        ):
            async with Nurse(await d.console_url()) as nurse:
                session_id = await start_session(nurse)
                assert nurse.now() < PULL - 20, "the session must start before the faults"
                # The cable: device_lost (spo2) 5 s after the last line, cleared once back.
                lost = await nurse.wait(alarm("device_lost", device="spo2"), within=20)
                back = await nurse.wait(alarm("device_lost", "cleared"), within=20)
                # Noise: SpO2 below 90 for 15 s raises spo2_low on time, noise or not.
                low = await nurse.wait(alarm("spo2_low", priority="medium"), within=20)
                # Silent with the port open: medium at 5 s, high at 30 s (onset), latched.
                silent = await nurse.wait(alarm("device_lost", device="spo2"), within=20,
                                          after=nurse.seen.index(back))  # fmt: skip
                high = await nurse.wait(alarm("device_lost", priority="high"), within=20)
                latched = await nurse.wait(alarm("device_lost", "latched"), within=20)
                status, _ = await nurse.post("/api/alarms/ack", {"id": "device_lost"})
                assert status == 200
                # The BP module stops answering: a measurement asked for fails within 5 s.
                await nurse.wait(lambda m: m.get("t", 0) >= BP_SILENT + 2, within=20)
                status, _ = await nurse.post("/api/nibp/measure", {})
                assert status == 200
                asked = nurse.now()
                bp_lost = await nurse.wait(alarm("device_lost", device="nibp"), within=20)
                desat = await nurse.wait(alarm("spo2_low", priority="high"), within=20)
                bp_back = await nurse.wait(alarm("device_lost", "cleared"), within=30,
                                           after=nurse.seen.index(bp_lost))  # fmt: skip
            await heard.wait_for(
                "sessiond/room-f/event",
                lambda m: m.json().get("id") == "device_lost" and m.json().get("device") == "nibp",
            )
            assert await d.stop() == 0
            d.assert_no_traceback()

    check_what_the_nurse_saw(nurse, lost, back, low, silent, high, latched)
    assert within(bp_lost["t"], asked, asked + 8), bp_lost
    assert within(desat["t"], DESAT + 1, DESAT + 6), desat
    assert within(bp_back["t"], BP_SILENT_END, BP_SILENT_END + 25), bp_back
    # The links did not flap: one lost and one back per fault, on the console and on MQTT.
    spo2_links = [(m["t"], m["connected"]) for m in nurse.seen
                  if m.get("type") == "device" and m["device"] == "spo2"]  # fmt: skip
    silent_links = [c for t, c in spo2_links if within(t, SILENT, SILENT_END + 20)]
    assert silent_links == [False, True], spo2_links
    states = [m.json()["devices"].get("spo2", {}).get("connected") for m in heard.on(
        "sessiond/room-f/state") if within(m.json()["t"], SILENT + 16, SILENT_END - 1)]  # fmt: skip
    assert states, "no state published during the silence"
    assert not any(states), states
    assert len(d.lines_matching(r"spo2: link down: no data")) == 1
    check_the_record(tmp_path / "record.sqlite", session_id, nurse)


def check_what_the_nurse_saw(nurse: Nurse, *seen: dict[str, Any]) -> None:
    """Each oximeter fault's alarm at its time (session seconds), and no other alarm."""
    lost, back, low, silent, high, latched = seen
    assert within(lost["t"], PULL + 4, PULL + 8), lost
    assert lost["priority"] == "medium"
    assert within(back["t"], PULL + 15, PULL + 15 + 12), back
    assert within(low["t"], NOISE + 15, NOISE + 20), low
    assert within(silent["t"], SILENT + 4, SILENT + 8), silent
    assert within(high["t"], SILENT + 29, SILENT + 33), high
    assert within(latched["t"], SILENT_END, SILENT_END + 20), latched
    # No alarm the faults must not raise: noise is skipped, a silent device is not sensor_off.
    ids = {a[1] for a in nurse.alarms()}
    assert ids <= {"device_lost", "spo2_low", "nibp_error", "dose_gate"}, ids
    assert not [a for a in nurse.alarms("device_lost") if within(a[0], NOISE, NOISE + 25)]


def check_the_record(path: Path, session_id: str, nurse: Nurse) -> None:
    """Every transition the nurse saw, the links' real changes only, every noisy line."""
    with record(path) as db:
        rows = db.execute(
            "SELECT t, alarm_id, priority, state, device FROM alarms WHERE session_id = ?"
            " ORDER BY id", (session_id,)).fetchall()  # fmt: skip
        seen = nurse.alarms()
        # Every transition the nurse saw is in the record, with its device.
        assert [(round(r[0], 3), *r[1:]) for r in rows] == seen  # the page gets t to 1 ms
        events = db.execute(
            "SELECT t, connected FROM device_events WHERE device = 'spo2' AND t BETWEEN ? AND ?",
            (SILENT, SILENT_END + 20),
        ).fetchall()
        assert [c for _, c in events] == [0, 1]
        (readings,) = db.execute(
            "SELECT count(*) FROM readings WHERE device = 'spo2' AND t BETWEEN ? AND ?",
            (NOISE, NOISE + 20),
        ).fetchone()
        assert readings >= 19  # the noise cost no line
        errors = db.execute("SELECT data FROM events WHERE type = 'nibp_failed'").fetchall()
        assert any("did not answer" in json.loads(e[0])["detail"] for e in errors)
