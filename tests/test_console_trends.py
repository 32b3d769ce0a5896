"""Trends served from the record (downsampled, with phases, dose and alarms), pleth in bounded
batches, the page's charts after a reload, and a Nonin DF7 on the simulator end to end."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import ClientSession, CookieJar
from playwright.async_api import async_playwright, expect

from sessiond.app import Daemon
from sessiond.clock import LoopClock
from sessiond.config import parse_config
from sessiond.console import server
from sessiond.console.auth import hash_password
from sessiond.model import AlarmState, AlarmTransition, Phase, Priority, Reading, Waveform
from sessiond.sim.scenario import builtin_scenario
from sessiond.sim.simulator import Simulator
from tests.test_console import next_message, sign_in
from tests.test_console_browser import CHROMIUM, Room, log_in
from tests.test_console_entries import recorded

if TYPE_CHECKING:
    from tests.console_stub import StubControl


def a_session(control: StubControl) -> None:
    """30 minutes of 1 Hz oximetry with a desaturation to 81 %, BP every 5 min, an alarm."""
    start = control.t
    for second in range(1800):
        t = start + second
        spo2 = 81 if 900 <= second < 905 else 97
        control.bus.publish(Reading(t=t, device="spo2", spo2=spo2, pr=70 + second % 7))
        if second % 300 == 0:
            control.bus.publish(Reading(t=t, device="nibp", sys=130 + second // 300, dia=80,
                                        map=97, pr=72))  # fmt: skip
    control.bus.publish(AlarmTransition(t=start + 900, alarm_id="spo2_low", priority=Priority.HIGH,
                                        state=AlarmState.ACTIVE, phase=Phase.ONSET,
                                        value=81.0, limit=85.0))  # fmt: skip
    control.t = start + 1800


async def test_the_trend_is_read_from_the_record_and_downsampled(tmp_path: Path) -> None:
    """Downsampled to the points asked, a desaturation is never averaged away; every BP,
    the alarms, the phases and the dose come with it."""
    async with recorded(tmp_path) as (control, port, recorder):
        jar = CookieJar(unsafe=True)
        async with ClientSession(base_url=f"http://127.0.0.1:{port}", cookie_jar=jar) as client:
            await sign_in(client)
            async with client.post("/api/session/start", json={"route": "iv"}) as resp:
                assert resp.status == 200
            control.t += 300
            async with client.post("/api/session/dose", json={}) as resp:
                assert resp.status == 200
            a_session(control)
            assert await recorder.sync()  # everything published so far is on disk
            async with client.get("/api/session/trend?points=100") as resp:
                trend: dict[str, Any] = await resp.json()
            async with client.get("/api/session/trend?points=5") as resp:
                assert resp.status == 400
    assert trend["found"]
    assert trend["dose_t"] == 1300.0
    # 2100 s of session in 100 buckets of 21 s; oximetry from the dose on.
    assert 80 <= len(trend["oximetry"]) <= 101
    assert min(spo2 for _, spo2, _ in trend["oximetry"]) == 81
    assert max(pr for _, _, pr in trend["oximetry"]) == 76
    assert [r["sys"] for r in trend["bp"]] == [130, 131, 132, 133, 134, 135]
    assert [(a["id"], a["priority"]) for a in trend["alarms"]] == [("spo2_low", "high")]
    assert [p["phase"] for p in trend["phases"]] == ["baseline", "onset"]


def publish_read(control: StubControl, t: float, n: int = 25) -> None:
    """What a link publishes for an oximeter's read: a reading, and its pleth samples."""
    control.bus.publish(Reading(t=t, device="spo2", spo2=97, pr=70))
    control.bus.publish(Waveform(t=t, device="spo2", pleth=tuple(range(n))))


async def test_pleth_goes_out_in_bounded_batches(tmp_path: Path) -> None:
    """Pleth samples are not in the readings: they go in batches a few times a second, at
    most `PLETH_MAX_SAMPLES` each, with the device's sample rate."""
    async with recorded(tmp_path, pleth_rates={"spo2": 75.0}) as (control, port, _recorder):
        jar = CookieJar(unsafe=True)
        async with ClientSession(base_url=f"http://127.0.0.1:{port}", cookie_jar=jar) as client:
            await sign_in(client)
            async with client.ws_connect("/ws") as ws:
                await next_message(ws, "status")
                for k in range(3):
                    publish_read(control, control.t + k / 3)
                reading = await next_message(ws, "reading")
                assert "pleth" not in reading
                batch = await next_message(ws, "pleth")
                assert batch["device"] == "spo2"
                assert batch["rate_hz"] == 75.0
                assert batch["samples"] == list(range(25)) * 3
                # A flood (a simulation at 60x): the batch keeps the newest samples only.
                for k in range(100):
                    publish_read(control, control.t + 1 + k / 100)
                sizes: list[int] = []
                async with asyncio.timeout(5):
                    while sum(sizes) < server.PLETH_MAX_SAMPLES:
                        sizes.append(len((await next_message(ws, "pleth"))["samples"]))
                assert max(sizes) <= server.PLETH_MAX_SAMPLES


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")
async def test_trends_and_pleth_in_the_page_survive_a_reload(tmp_path: Path) -> None:
    """The page charts the session from the record, with its windows and marks, and again
    after a reload; a pleth waveform appears when the oximeter sends one."""
    async with (
        recorded(tmp_path, pleth_rates={"spo2": 75.0}) as (control, port, recorder),
        async_playwright() as pw,
    ):
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = await browser.new_page(viewport={"width": 1440, "height": 900})
        await page.goto(f"http://127.0.0.1:{port}/")
        room = Room(bus=control.bus, control=control, runner=None, port=port, page=page)  # type: ignore[arg-type]
        await log_in(room)
        await page.click("#start-session")
        control.t += 300
        await page.click("#mark-dose")
        await expect(page.locator("#phase")).to_have_text("onset")
        a_session(control)
        assert await recorder.sync()
        for _ in range(2):  # before and after a reload: the same, from the record
            await page.reload()
            await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
            async with asyncio.timeout(10):
                while not await page.evaluate(  # noqa: ASYNC110 - the page has no event to await
                    "Boolean(window.sessiondCharts.vitals) && "
                    "window.sessiondCharts.vitals.data[0].length > 50"
                ):
                    await asyncio.sleep(0.1)
            lowest = await page.evaluate(
                "Math.min(...window.sessiondCharts.vitals.data[1].filter((v) => v != null))"
            )
            assert lowest == 81
            assert await page.evaluate("window.sessiondCharts.bp.data[1].length") == 6
        await expect(page.get_by_test_id("pleth-panel")).to_be_hidden()
        for k in range(12):
            publish_read(control, control.t + k / 3)
            await asyncio.sleep(0.05)
        await expect(page.get_by_test_id("pleth-panel")).to_be_visible()
        await expect(page.locator("#pleth-device")).to_have_text("spo2 · 75 Hz")
        assert await page.evaluate("window.sessiondCharts.pleth.data[1].length") >= 100
        await page.screenshot(path=str(tmp_path / "trends.png"), full_page=True)
        await browser.close()


@pytest.mark.parametrize(
    ("decoder", "rate_hz"), [("nonin-df7", 75.0), ("contec-v7", 60.0)], ids=["df7", "contec"]
)
async def test_an_oximeter_sends_its_pleth_to_the_console(
    tmp_path: Path, decoder: str, rate_hz: float
) -> None:
    """The simulator's oximeter on a pseudo-terminal, the daemon reading it: the console's
    socket carries its waveform in batches. A Nonin DF7 (3 packets a second) and a Contec
    (60) both send their pleth as a waveform of its own, with a reading at each change and
    about once a second otherwise (DESIGN §6)."""
    config = parse_config(
        {
            "console": {
                "port": 0,
                "users": {"ana": {"password_hash": hash_password("pw", iterations=1000)}},
            },
            "records": {"path": str(tmp_path / "record.sqlite")},
            "music": {"enabled": False},
            "alarm_audio": {"enabled": False},
            "devices": {"spo2": {"decoder": decoder}},
        },
        source="test",
    )
    clock = LoopClock()
    with Simulator(scenario=builtin_scenario("demo"), clock=clock,
                   devices={"spo2": decoder}) as simulator:  # fmt: skip
        simulator.start()
        daemon = Daemon(config=config, clock=clock,
                        device_paths={"spo2": simulator.ports["spo2"].path})  # fmt: skip
        tasks = [asyncio.create_task(simulator.run()), asyncio.create_task(daemon.run())]
        try:
            async with asyncio.timeout(10):
                while daemon.console_port is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            base = f"http://127.0.0.1:{daemon.console_port}"
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                r = await http.post(f"{base}/api/login", json={"user": "ana", "password": "pw"})
                assert r.status == 200
                async with http.ws_connect(f"{base}/ws") as ws:
                    samples: list[int] = []
                    readings = 0
                    async with asyncio.timeout(15):
                        while len(samples) < 150:
                            msg: dict[str, Any] = await ws.receive_json()
                            if msg["type"] == "reading":
                                readings += 1
                                assert "pleth" not in msg
                            if msg["type"] != "pleth":
                                continue
                            assert msg["rate_hz"] == rate_hz
                            assert len(msg["samples"]) <= server.PLETH_MAX_SAMPLES
                            samples += msg["samples"]
            # 150 samples are 2-2.5 s of pleth: a few readings, not one per packet.
            assert readings <= 10
            assert len(set(samples)) > 10  # a waveform, not a constant
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)
