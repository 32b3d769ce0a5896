"""`sessiond demo` as a newcomer runs it: the real daemon on the simulator over real ptys.

The built-in demo scenario follows the session: the patient is calm until a nurse doses, its
events come minutes after the dose and hold until the nurse acknowledges their alarm, and the
patient stays calm once the script is done. At 600x it raises exactly the alarms the scenario
promises, and a speed the demo cannot hold is refused.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.async_api import async_playwright, expect

from sessiond.cli import main
from sessiond.speed import DEVICE_TIMEOUT_MIN_REAL_S, MAX_DEMO_SPEED
from tests.faults.harness import Nurse, alarm, start_session
from tests.test_console_browser import CHROMIUM
from tests.test_run_sim import QUIET_AUDIO, line_starting, log_of, process

if TYPE_CHECKING:
    import asyncio
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.e2e

# demo.toml, as session seconds after the dose: the dip starts at +80 s (SpO2 below 90 a few
# seconds later, `spo2_low` 15 s after that) and is written to recover from +150 s; the probe
# comes off at +600 s (`sensor_off` 5 s later).
DIP, DIP_RECOVERS, OFF = 80.0, 150.0, 600.0
HAVE_CHROMIUM = Path(CHROMIUM).exists()


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "room.toml"
    config.write_text(
        f"[room]\nid = 'room-demo'\n[console]\nport = 0\n"
        f"[records]\npath = '{tmp_path / 'record.sqlite'}'\n"
        f"[music]\nenabled = false\n{QUIET_AUDIO}",
        encoding="utf-8",
    )
    return config


@contextlib.asynccontextmanager
async def demo(
    tmp_path: Path, speed: float
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    args = ("demo", "--speed", f"{speed:g}", "--config", str(write_config(tmp_path)))
    async with process(*args, cwd=tmp_path) as proc:
        sign_in = await line_starting(proc, "demo sign-in: ")
        assert sign_in == "demo sign-in: nurse / demo"
        url = (await line_starting(proc, "console: ")).split()[1].rstrip("/")
        yield proc, url


async def stopped(proc: asyncio.subprocess.Process) -> int:
    os.killpg(proc.pid, signal.SIGTERM)
    return await proc.wait()


def acknowledged(alarm_id: str) -> Any:
    """The nurse's acknowledgement, as the page is told of it (with its session time)."""
    return lambda m: m.get("action") == "ack" and m.get("alarm_id") == alarm_id


def is_reading_after(t: float) -> Any:
    return lambda m: m.get("type") == "reading" and m.get("device") == "spo2" and m["t"] > t


async def test_at_600x_the_demo_raises_what_its_scenario_promises_after_the_dose(tmp_path):
    """Nothing before the dose; after it the dip's `spo2_low` and the probe's `sensor_off`
    at their session times after the dose, each held until acknowledged and then cleared as
    the patient recovers; then calm for hours: readings on, no `device_lost`, nothing else."""
    async with demo(tmp_path, 600) as (proc, url), Nurse(url) as nurse:
        # Before any session (20 session minutes): calm vitals, no alarm.
        calm = await nurse.wait(is_reading_after(1200), within=30)
        assert 94 <= calm["spo2"] <= 100
        assert nurse.alarms() == []
        await start_session(nurse)
        dose_t = (await nurse.wait(lambda m: m.get("phase") == "onset"))["t"]
        assert nurse.alarms() == []
        low = await nurse.wait(alarm("spo2_low"), within=30)
        status, body = await nurse.post("/api/alarms/ack", {"id": "spo2_low"})
        assert status == 200, body
        low_ack = (await nurse.wait(acknowledged("spo2_low")))["t"]
        low_clear = await nurse.wait(alarm("spo2_low", "cleared"), within=30)
        off = await nurse.wait(alarm("sensor_off"), within=30)
        status, body = await nurse.post("/api/alarms/ack", {"id": "sensor_off"})
        assert status == 200, body
        off_ack = (await nurse.wait(acknowledged("sensor_off")))["t"]
        off_clear = await nurse.wait(alarm("sensor_off", "cleared"), within=30)
        # The script is done: the patient stays calm and the devices keep sending.
        last = await nurse.wait(is_reading_after(dose_t + 3 * 3600), within=60)
        assert await stopped(proc) == 0

    assert DIP + 15 <= low["t"] - dose_t <= DIP + 60, low
    assert low["value"] < 90
    assert 0 < low_clear["t"] - low_ack <= 60, (low_ack, low_clear)
    # The script waited for the nurse only if the dip was held past its written end.
    waited = max(0.0, low_ack - (dose_t + DIP_RECOVERS))
    assert OFF + 5 <= off["t"] - dose_t - waited <= OFF + 45, (off, waited)
    assert 0 <= off_clear["t"] - off_ack <= 30, (off_ack, off_clear)
    assert 94 <= last["spo2"] <= 100
    # Exactly the promised alarms: each raised once, medium, and cleared.
    assert [(a[1], a[2], a[3]) for a in nurse.alarms()] == [
        ("spo2_low", "medium", "active"),
        ("spo2_low", "medium", "cleared"),
        ("sensor_off", "medium", "active"),
        ("sensor_off", "medium", "cleared"),
    ], (nurse.alarms(), dose_t)
    lost = [m for m in nurse.seen if m.get("type") == "device" and not m["connected"]]
    assert lost == []
    log = log_of(proc)
    for problem in ("link down", "BP measurement failed", "behind real time", "Traceback"):
        assert problem not in log, log[-3000:]
    # Readings on to the end, no gap as long as a device_lost needs at this speed (its 5 s
    # stretched to 0.5 s of real time: a loaded machine stalls a process for ~0.1-0.3 s).
    ts = [m["t"] for m in nurse.seen if m.get("type") == "reading" and m["device"] == "spo2"]
    assert max(b - a for a, b in itertools.pairwise(ts)) < DEVICE_TIMEOUT_MIN_REAL_S * 600


async def test_a_nurse_in_the_browser_doses_acknowledges_the_desaturation_and_sees_it_clear(
    tmp_path,
):
    """At the README's 60x: sign in, start, tick the pre-dose checklist, mark the dose; the
    SpO2 alarm appears and stays until acknowledged; the patient recovers and it clears."""
    if not HAVE_CHROMIUM:
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    async with demo(tmp_path, 60) as (proc, url), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 860})
            await page.goto(url)
            await page.fill("#login-user", "nurse")
            await page.fill("#login-password", "demo")
            await page.click("#login-button")
            await expect(page.locator("#signed-in-user")).to_have_text("nurse")
            await expect(page.locator("#phase")).to_have_text("no session")
            await expect(page.locator("#spo2")).to_have_text(re.compile(r"^(9[4-9]|100)$"))
            rows = page.locator("#alarms li")
            await expect(rows).to_have_count(0)
            await page.click("#start-session")
            await expect(page.locator("#phase")).to_have_text("baseline")
            boxes = page.get_by_test_id("predose-items").locator("input")
            await expect(boxes.first).to_be_visible()
            for i in range(await boxes.count()):
                await boxes.nth(i).check()
            await page.click("#predose-confirm")
            await expect(page.get_by_test_id("predose-state")).to_contain_text("complete")
            await page.click("#mark-dose")
            await expect(page.locator("#phase")).to_have_text("onset")
            # 80 s after the dose SpO2 falls; 15 s below 90 % and the alarm is shown.
            low = page.locator('#alarms li[data-alarm-id="spo2_low"]')
            await expect(low).to_be_visible(timeout=30_000)
            await expect(low).to_contain_text("SpO\u2082 low")
            await expect(rows).to_have_count(1)
            await page.get_by_test_id("ack-spo2_low").click()
            # The patient responds to the nurse: SpO2 recovers and the alarm clears.
            await expect(low).to_have_count(0, timeout=30_000)
            await expect(page.locator("#spo2")).to_have_text(
                re.compile(r"^(9[1-9]|100)$"), timeout=30_000
            )
        finally:
            await browser.close()
        assert await stopped(proc) == 0
    assert "Traceback" not in log_of(proc)


def test_a_speed_the_demo_cannot_hold_is_refused_with_one_line(capsys):
    """Above the measured limit: one line naming it, exit 2, nothing started."""
    too_fast = MAX_DEMO_SPEED * 2
    assert main(["demo", "--speed", f"{too_fast:g}", "--port", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"--speed {too_fast:g}" in err[0]
    assert f"at most {MAX_DEMO_SPEED:g}" in err[0]
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert f"at most {MAX_DEMO_SPEED:g}" in " ".join(capsys.readouterr().out.split())
