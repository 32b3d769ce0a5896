"""The infusion on the console: the API over real HTTP, and the page in a real Chromium.

The control here is the daemon's session control on a real monitor (no devices, no record),
so what the console shows is what the monitor did with each command.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import ClientSession, CookieJar
from playwright.async_api import async_playwright, expect

from sessiond.bus import Bus
from sessiond.config import Config
from sessiond.console.server import create_console_app, start_console
from sessiond.model import DoseUnit, Reading
from sessiond.session.commands import CommandRejected, ConsoleControl
from sessiond.session.monitor import Monitor
from tests.console_stub import PASSWORD, USERS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from aiohttp import web
    from playwright.async_api import ConsoleMessage, Error, Page

    from sessiond.model import Event, Route

CHROMIUM = "/usr/bin/chromium"
WAIT_S = 5.0


class MonitorControl:
    """`SessionControl` on a real monitor at a clock the test moves (`t`); every event goes
    on the bus, as the daemon's `_command` does (the record aside)."""

    def __init__(self, bus: Bus, *, t: float = 1000.0) -> None:
        self.bus = bus
        self.t = t
        self.monitor = Monitor(config=Config(), streaming=[], nibp=["nibp"])

    def now(self) -> float:
        return self.t

    def _run(self, act: Callable[[float], list[Event]]) -> None:
        for event in self.monitor.advance(self.t):
            self.bus.publish(event)
        for event in act(self.t):
            self.bus.publish(event)

    def bp(self, sys: int, dia: int) -> None:
        """The BP module reports a reading now."""
        reading = Reading(t=self.t, device="nibp", sys=sys, dia=dia, map=(sys + 2 * dia) // 3)
        self.bus.publish(reading)
        self._run(lambda _t: self.monitor.on_reading(reading))

    async def start_session(self, *, route: Route, user: str, source: str) -> str:
        session_id = secrets.token_hex(4)
        self._run(lambda t: self.monitor.start_session(t, session_id=session_id, route=route,
                                                       user=user, source=source))  # fmt: skip
        return session_id

    async def mark_dose(self, *, user: str, source: str, reason: str | None = None) -> None:
        self._run(lambda t: self.monitor.mark_dose(t, user=user, source=source, reason=reason))

    async def start_infusion(
        self,
        *,
        amount: float,
        unit: DoseUnit,
        planned_min: float,
        user: str,
        source: str,
        reason: str | None = None,
    ) -> None:
        self._run(lambda t: self.monitor.start_infusion(
            t, amount=amount, unit=unit, planned_min=planned_min, user=user, source=source,
            reason=reason))  # fmt: skip

    async def pause_infusion(self, *, reason: str, user: str, source: str) -> None:
        self._run(lambda t: self.monitor.pause_infusion(t, reason=reason, user=user,
                                                        source=source))  # fmt: skip

    async def resume_infusion(self, *, reason: str, user: str, source: str) -> None:
        self._run(lambda t: self.monitor.resume_infusion(t, reason=reason, user=user,
                                                         source=source))  # fmt: skip

    async def stop_infusion(
        self,
        *,
        amount: float,
        unit: DoseUnit | None,
        user: str,
        source: str,
        reason: str | None = None,
    ) -> None:
        self._run(lambda t: self.monitor.stop_infusion(t, amount=amount, unit=unit, user=user,
                                                       source=source, reason=reason))  # fmt: skip

    async def end_session(self, *, user: str, source: str) -> None:
        self._run(lambda t: self.monitor.end_session(t, user=user, source=source))

    async def acknowledge(self, *, alarm_id: str, user: str, source: str) -> None:
        self._run(lambda t: self.monitor.acknowledge(t, alarm_id=alarm_id, user=user,
                                                     source=source))  # fmt: skip

    async def pause_audio(self, *, user: str, source: str) -> None:
        self._run(lambda t: self.monitor.pause_audio(t, user=user, source=source))

    async def add_note(self, *, text: str, user: str, source: str) -> None:
        self._run(lambda t: self.monitor.add_note(t, text=text, user=user, source=source))

    async def measure_nibp(self, *, user: str, source: str) -> None:
        self._run(lambda t: self.monitor.measure_nibp(t, user=user, source=source))

    async def add_entry(self, *, entry: dict[str, Any], user: str, source: str) -> None:
        self._run(lambda t: self.monitor.add_entry(t, entry=entry, user=user, source=source))

    async def checklist(
        self, *, kind: str, checked: list[str], reason: str | None, user: str, source: str
    ) -> None:
        self._run(lambda t: self.monitor.checklist(t, kind=kind, checked=checked, reason=reason,
                                                   user=user, source=source))  # fmt: skip

    async def set_scene(self, *, scene: str | None, pinned: bool, user: str, source: str) -> None:
        raise CommandRejected("no room in this test")

    async def set_volume(self, *, volume_pct: int, pinned: bool, user: str, source: str) -> None:
        raise CommandRejected("no room in this test")


@dataclass(kw_only=True)
class Served:
    runner: web.AppRunner
    port: int
    bus: Bus
    control: MonitorControl

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    bus = Bus()
    control = MonitorControl(bus)
    typed: ConsoleControl = control
    app = create_console_app(bus=bus, control=typed, users=USERS, room_id="room-9")
    runner, port = await start_console(app, host="127.0.0.1", port=0)
    try:
        yield Served(runner=runner, port=port, bus=bus, control=control)
    finally:
        await runner.cleanup()


@pytest.fixture
async def client(served: Served) -> AsyncIterator[ClientSession]:
    async with ClientSession(base_url=served.url, cookie_jar=CookieJar(unsafe=True)) as session:
        yield session


async def post(client: ClientSession, path: str, body: object) -> tuple[int, dict[str, Any]]:
    async with client.post(path, json=body) as resp:
        return resp.status, await resp.json()


async def post_raw(client: ClientSession, path: str, raw: str) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    async with client.post(path, data=raw.encode(), headers=headers) as resp:
        return resp.status, await resp.json()


async def status(client: ClientSession) -> dict[str, Any]:
    async with client.get("/api/status") as resp:
        data: dict[str, Any] = await resp.json()
        return data


START = {"amount": 0.5, "unit": "mg/kg", "planned_min": 40}


async def test_the_api_starts_pauses_resumes_and_stops_an_infusion(
    served: Served, client: ClientSession
) -> None:
    """Each command reaches the monitor as the signed-in user; the status follows it."""
    assert await post(client, "/api/infusion/start", START) == (401, {"error": "not signed in"})
    assert (await post(client, "/api/login", {"user": "nurse1", "password": PASSWORD}))[0] == 200
    assert await post(client, "/api/infusion/start", START) == (
        409, {"error": "no session is running: start one first"})  # fmt: skip
    assert (await post(client, "/api/session/start", {"route": "iv"}))[0] == 200
    assert await post(client, "/api/infusion/pause", {"reason": "x"}) == (
        409, {"error": "no infusion is running: nothing to pause"})  # fmt: skip
    assert await post(client, "/api/infusion/stop", {"amount": 1}) == (
        409, {"error": "no infusion was started: nothing to stop"})  # fmt: skip
    bad: list[tuple[str, str]] = [
        ('{"amount": NaN, "unit": "mg", "planned_min": 40}', "amount:"),
        ('{"amount": 1e9, "unit": "mg", "planned_min": 40}', "amount: Input should be less"),
        ('{"amount": 0, "unit": "mg", "planned_min": 40}', "amount: Input should be greater"),
        ('{"amount": "35", "unit": "mg", "planned_min": 40}', "amount: Input should be"),
        ('{"amount": 35, "unit": "ml", "planned_min": 40}', "unit: Input should be"),
        ('{"amount": 35, "unit": "mg", "planned_min": 0}', "planned_min: Input should be"),
        ('{"amount": 35, "unit": "mg", "planned_min": 241}', "planned_min: Input should be"),
        ('{"amount": 35, "unit": "mg"}', "planned_min: required"),
        ('{"amount": 35, "unit": "mg", "planned_min": 40, "rate": 1}', "rate: unknown field"),
    ]
    for raw, error in bad:
        code, body = await post_raw(client, "/api/infusion/start", raw)
        assert code == 400, raw
        assert body["error"].startswith(error), (raw, body)
    assert await post(client, "/api/infusion/start", {**START, "amount": 6}) == (
        409, {"error": "planned amount: must be 0-5 mg/kg (got 6.0)"})  # fmt: skip
    assert await post(client, "/api/infusion/start", START) == (200, {})
    monitor = served.control.monitor
    assert monitor.infusion is not None
    assert (monitor.infusion.planned_amount, monitor.infusion.unit) == (0.5, DoseUnit.MG_PER_KG)
    assert monitor.timeline.dose_t == 1000.0
    assert (await post(client, "/api/infusion/pause", {}))[1] == {"error": "reason: required"}
    assert (await post(client, "/api/infusion/pause", {"reason": "  "}))[0] == 400
    served.control.t = 1600.0
    assert await post(client, "/api/infusion/pause", {"reason": "nausea"}) == (200, {})
    shown = (await status(client))["infusion"]
    assert (shown["state"], shown["infused_min"], shown["pauses"]) == (
        "paused", 10.0, [{"t": 1600.0, "until_t": None}])  # fmt: skip
    assert (await post(client, "/api/infusion/pause", {"reason": "x"}))[1] == {
        "error": "the infusion is already paused"}  # fmt: skip
    served.control.t = 1900.0
    assert await post(client, "/api/infusion/resume", {"reason": "better"}) == (200, {})
    assert (await post(client, "/api/session/end", {}))[1] == {
        "error": "the infusion is still running: stop it first, with the amount given"}  # fmt: skip
    served.control.t = 3700.0
    assert (await post(client, "/api/infusion/stop", {"amount": -1}))[0] == 400
    assert await post(client, "/api/infusion/stop", {"amount": 0.5, "reason": "done"}) == (200, {})
    shown = (await status(client))["infusion"]
    keys = ("state", "infused_min", "paused_min", "given_amount", "given_unit")
    assert [shown[k] for k in keys] == ["stopped", 40.0, 5.0, 0.5, "mg/kg"]
    assert (await post(client, "/api/infusion/start", START))[1] == {
        "error": "an infusion was already started in this session"}  # fmt: skip


async def test_a_high_dose_gate_needs_a_reason_and_the_prompt_is_in_the_status(
    served: Served, client: ClientSession
) -> None:
    assert (await post(client, "/api/login", {"user": "nurse1", "password": PASSWORD}))[0] == 200
    assert (await post(client, "/api/session/start", {"route": "iv"}))[0] == 200
    served.control.bp(195, 118)
    code, body = await post(client, "/api/infusion/start", START)
    assert code == 409
    assert body["error"].startswith("dose_gate is high")
    reason = {**START, "reason": "prescriber reviewed"}
    async with client.ws_connect("/ws") as ws:
        assert (await post(client, "/api/infusion/start", reason))[0] == 200
        # bp_high is high (confirmed by the second reading) while the infusion runs.
        served.control.t = 1030.0
        served.control.bp(196, 119)
        async with asyncio.timeout(WAIT_S):
            while (msg := await ws.receive_json())["type"] != "infusion_prompt":
                pass
    assert msg["active"] is True
    assert [(r["sys"], r["dia"]) for r in msg["readings"]] == [(195, 118), (196, 119)]
    prompt = (await status(client))["infusion"]["prompt"]
    assert prompt["advice"] == "pause the infusion / notify the prescriber"
    assert (await post(client, "/api/infusion/pause", {"reason": "BP"}))[0] == 200
    assert (await status(client))["infusion"]["prompt"] is None


# ---- the page in a real browser -------------------------------------------------------------


@contextlib.asynccontextmanager
async def page_on(served: Served) -> AsyncIterator[tuple[Page, list[str]]]:
    problems: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})

            def on_console(msg: ConsoleMessage) -> None:
                if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
                    problems.append(msg.text)

            def on_error(error: Error) -> None:
                problems.append(str(error))

            page.on("console", on_console)
            page.on("pageerror", on_error)
            await page.goto(served.url)
            # Viewing needs a signed-in nurse: sign in, then the room goes live.
            await page.fill("#login-user", "nurse1")
            await page.fill("#login-password", PASSWORD)
            await page.click("#login-button")
            await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
            yield page, problems
        finally:
            await browser.close()


async def start_on_the_page(page: Page, control: MonitorControl) -> None:
    """Start: the dose, with its plan."""
    await expect(page.locator("#infusion-panel")).to_be_hidden()  # no session
    await page.click("#start-session")
    await expect(page.locator("#infusion-state")).to_have_text(
        "not started · its start is the dose"
    )
    await page.click("#infusion-start")
    dialog = page.locator("#infusion-dialog")
    await expect(dialog).to_be_visible()
    await expect(page.locator("#infusion-confirm")).to_be_disabled()
    await page.fill("#infusion-amount", "35")
    await page.select_option("#infusion-unit", "mg")
    await page.fill("#infusion-minutes", "45")
    await page.click("#infusion-confirm")
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#phase")).to_have_text("onset")
    await expect(page.locator("#infusion-state")).to_have_text("running · 0:00 of 45:00 planned")
    await expect(page.locator("#infusion-plan")).to_have_text("35 mg over 45 min")
    assert control.monitor.infusion is not None
    assert control.monitor.infusion.planned_amount == 35.0


async def prompt_and_pause_on_the_page(page: Page, control: MonitorControl) -> None:
    """A confirmed critical BP: the prompt with its readings; a pause with a reason ends it."""
    control.t = 1900.0
    control.bp(186, 112)
    control.bp(188, 114)
    prompt = page.locator("#infusion-prompt")
    await expect(prompt).to_be_visible()
    await expect(prompt).to_contain_text("pause the infusion / notify the prescriber")
    readings = page.locator("#infusion-prompt-readings")
    await expect(readings).to_contain_text("186/112 mmHg")
    await expect(readings).to_contain_text("188/114 mmHg")
    await expect(page.locator("#window-infusion .run")).to_have_count(1)
    await page.click("#infusion-pause")
    await expect(page.locator("#infusion-confirm")).to_be_disabled()
    await page.fill("#infusion-reason", "BP 188/114, prescriber called")
    await page.click("#infusion-confirm")
    await expect(prompt).to_be_hidden()
    await expect(page.locator("#infusion-state")).to_have_attribute("data-state", "paused")
    await expect(page.locator("#infusion-resume")).to_be_visible()
    await expect(page.locator("#infusion-pause")).to_be_hidden()
    await expect(page.locator("#infusion-pauses")).to_contain_text("1 ·")


async def resume_and_stop_on_the_page(page: Page, control: MonitorControl) -> None:
    """Resumed once BP is down (the alarm latched: no prompt); stopped with the amount."""
    control.t = 2190.0
    control.bp(140, 88)
    control.t = 2200.0
    await page.click("#infusion-resume")
    await page.fill("#infusion-reason", "BP 140/88, prescriber: go on")
    await page.click("#infusion-confirm")
    await expect(page.locator("#infusion-state")).to_have_attribute("data-state", "running")
    await expect(page.locator("#infusion-prompt")).to_be_hidden()
    control.t = 2400.0  # the next tick carries it: the shade shows two runs
    await expect(page.locator("#window-infusion .run")).to_have_count(2)
    control.t = 4000.0
    await page.click("#infusion-stop")
    await expect(page.locator("#infusion-unit")).to_have_value("mg")
    await page.fill("#infusion-amount", "34")
    await page.click("#infusion-confirm")
    state = page.locator("#infusion-state")
    await expect(state).to_have_attribute("data-state", "stopped")
    await expect(page.locator("#infusion-given")).to_have_text("34 mg")
    await expect(state).to_have_text("stopped · ran 45:00 of 45:00 planned")
    await expect(page.locator("#infusion-controls button:visible")).to_have_count(0)


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")
async def test_the_page_starts_pauses_resumes_and_stops_an_infusion(served: Served) -> None:
    control = served.control
    async with page_on(served) as (page, problems):
        await start_on_the_page(page, control)
        await prompt_and_pause_on_the_page(page, control)
        await resume_and_stop_on_the_page(page, control)
        # The same after a reload: the status snapshot carries it all.
        await page.reload()
        await expect(page.locator("#infusion-given")).to_have_text("34 mg")
        await expect(page.locator("#infusion-pauses")).to_have_text("1 · 5:00 in all")
        assert problems == []
    infusion = control.monitor.infusion
    assert infusion is not None
    assert infusion.pauses == ((1900.0, 2200.0),)
    assert (infusion.stopped_t, infusion.given_amount, infusion.given_unit) == (
        4000.0, 34.0, DoseUnit.MG)  # fmt: skip
