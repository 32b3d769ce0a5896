"""The console page in a real headless Chromium: live values, sign-in, commands and alarms."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.async_api import Dialog, Page, async_playwright, expect

from sessiond.bus import Bus
from sessiond.console.server import create_console_app, start_console
from sessiond.model import (
    AlarmState,
    AlarmTransition,
    DeviceStatus,
    Phase,
    Priority,
    Quality,
    Reading,
    Route,
)
from tests.console_stub import PASSWORD, USERS, StubControl

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aiohttp import web
    from playwright.async_api import Browser, ConsoleMessage, Error

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    ),
]


@dataclass(kw_only=True)
class Room:
    """A console on an ephemeral port with its bus and stub, and a page open on it."""

    bus: Bus
    control: StubControl
    runner: web.AppRunner
    port: int
    page: Page
    problems: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def serve(*, port: int = 0, t: float = 1000.0) -> tuple[Bus, StubControl, web.AppRunner, int]:
    bus = Bus()
    control = StubControl(bus=bus, t=t)
    app = create_console_app(bus=bus, control=control, users=USERS, room_id="room-7")
    runner, bound = await start_console(app, host="127.0.0.1", port=port)
    return bus, control, runner, bound


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def room(browser: Browser) -> AsyncIterator[Room]:
    bus, control, runner, port = await serve()
    try:
        page = await browser.new_page(viewport={"width": 1280, "height": 860})
        room = Room(bus=bus, control=control, runner=runner, port=port, page=page)

        def on_console(msg: ConsoleMessage) -> None:
            # Chromium logs each 4xx answer; the tests provoke 401 and 409 on purpose.
            if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
                room.problems.append(msg.text)

        def on_error(error: Error) -> None:
            room.problems.append(str(error))

        page.on("console", on_console)
        page.on("pageerror", on_error)
        await page.goto(room.url)
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        yield room
        assert room.problems == []  # no script errors, no content-policy violations
    finally:
        await runner.cleanup()


def oximeter(t: float, **values: Any) -> Reading:
    return Reading(t=t, device="spo2", **({"spo2": 97, "pr": 72, "pi": 3.1} | values))


async def see_live_values(room: Room) -> None:
    """A published reading shows at once; a probe-off reading shows no number, flag named."""
    page, t = room.page, room.control.t
    await expect(page.locator("#room")).to_have_text("room-7")
    await expect(page.locator("#phase")).to_have_text("no session")
    room.bus.publish(oximeter(t, spo2=97, pr=72))
    await expect(page.locator("#spo2")).to_have_text("97")
    await expect(page.locator("#pr")).to_have_text("72")
    room.bus.publish(Reading(t=t, device="spo2", flags=Quality.SENSOR_OFF))
    await expect(page.locator("#spo2")).to_have_text("---")
    await expect(page.locator("#pr")).to_have_text("---")
    await expect(page.locator("#spo2-flags")).to_have_text("sensor off")


async def sign_in(room: Room) -> None:
    """A wrong password is shown inline; the right one shows the commands."""
    page = room.page
    await expect(page.locator("#start-session")).to_be_hidden()
    await page.fill("#login-user", "nurse1")
    await page.fill("#login-password", "wrong")
    await page.click("#login-button")
    await expect(page.locator("#error")).to_have_text("Wrong user name or password.")
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-button")
    await expect(page.locator("#signed-in-user")).to_have_text("nurse1")
    await expect(page.locator("#error")).to_be_hidden()
    await expect(page.locator("#mark-dose")).to_be_disabled()  # no session yet


async def start_and_dose(room: Room) -> None:
    """The buttons reach the session control as the user, and the page follows the phase."""
    page, control = room.page, room.control
    await page.select_option("#route", "im")
    await page.click("#start-session")
    await expect(page.locator("#phase")).to_have_text("baseline")
    await expect(page.locator("#session-route")).to_have_text("IM")
    control.t += 600
    await page.click("#mark-dose")
    await expect(page.locator("#phase")).to_have_text("onset")
    await expect(page.locator("#mark-dose")).to_be_disabled()
    assert control.calls == [
        ("start", {"route": Route.IM, "user": "nurse1", "source": "console"}),
        ("dose", {"user": "nurse1", "source": "console"}),
    ]
    # Timers run on the session clock that the ticks carry.
    control.t += 12 * 60 + 5
    await expect(page.locator("#since-dose")).to_have_text("12:05")
    await expect(page.locator("#since-start")).to_have_text("22:05")
    await expect(page.locator("#window-text")).to_have_text(re.compile("onset window"))
    # A rejected command is shown inline.
    await page.click("#start-session")
    await expect(page.locator("#error")).to_have_text("a session is already running")


async def see_alarm(room: Room) -> None:
    """A high `spo2_low` alarm appears in red with its value and limit."""
    page, t, bus = room.page, room.control.t, room.bus
    bus.publish(DeviceStatus(t=t, device="spo2", connected=True))
    bus.publish(DeviceStatus(t=t, device="nibp", connected=False, detail="no port"))
    bus.publish(Reading(t=t - 30, device="nibp", sys=138, dia=86, map=103, pr=74))
    bus.publish(oximeter(t, spo2=84, pr=96, pi=0.4))
    bus.publish(
        AlarmTransition(
            t=t,
            alarm_id="spo2_low",
            priority=Priority.HIGH,
            state=AlarmState.ACTIVE,
            phase=Phase.ONSET,
            value=84.0,
            limit=85.0,
        )
    )
    alarm = page.locator('#alarms [data-alarm-id="spo2_low"]')
    await expect(alarm).to_have_attribute("data-priority", "high")
    await expect(alarm).to_have_class(re.compile(r"\bhigh\b"))
    await expect(alarm).to_contain_text("84 %")
    await expect(alarm).to_contain_text("limit 85 %")
    await expect(page.locator("#spo2")).to_have_text("84")
    await expect(page.locator("#spo2-tile")).to_have_class(re.compile("alarm-high"))
    await expect(page.locator("#bp")).to_have_text("138/86")
    await expect(page.locator('#devices [data-device="nibp"]')).to_have_text("nibp lost: no port")


async def acknowledge_alarm(room: Room) -> None:
    """The Acknowledge button reaches the control as the signed-in user; the page marks it."""
    page = room.page
    await page.get_by_test_id("ack-spo2_low").click()
    alarm = page.locator('#alarms [data-alarm-id="spo2_low"]')
    await expect(alarm).to_contain_text("acknowledged")
    await expect(page.get_by_test_id("ack-spo2_low")).to_have_count(0)
    assert room.control.calls[-1] == (
        "ack", {"alarm_id": "spo2_low", "user": "nurse1", "source": "console"})  # fmt: skip


async def end_session(room: Room) -> None:
    """Ending asks for confirmation, then the page shows the session ended."""
    page = room.page

    async def confirm(dialog: Dialog) -> None:
        assert dialog.type == "confirm"
        await dialog.accept()

    page.once("dialog", confirm)
    await page.locator("#end-session").click()
    await expect(page.locator("#phase")).to_have_text(re.compile("ended", re.IGNORECASE))
    await expect(page.locator("#end-session")).to_be_disabled()
    assert room.control.calls[-1] == ("end", {"user": "nurse1", "source": "console"})


async def test_console_page(room: Room, tmp_path: Path) -> None:
    """A nurse sees live values, signs in, starts a session, marks the dose and sees an alarm."""
    await see_live_values(room)
    await sign_in(room)
    await start_and_dose(room)
    await see_alarm(room)
    await acknowledge_alarm(room)
    await end_session(room)
    shot = tmp_path / "console.png"
    await room.page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0


async def test_page_reconnects_after_the_console_restarts(room: Room) -> None:
    """When the daemon goes away the page says so, then reconnects on its own."""
    page = room.page
    room.bus.publish(oximeter(room.control.t, spo2=96))
    await expect(page.locator("#spo2")).to_have_text("96")

    await room.runner.cleanup()
    await expect(page.locator("#offline-banner")).to_be_visible()

    bus, control, runner, _ = await serve(port=room.port, t=50.0)
    try:
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        await expect(page.locator("#offline-banner")).to_be_hidden()
        # The restarted daemon's status replaces what the page showed before.
        await expect(page.locator("#spo2")).to_have_text("---")
        bus.publish(oximeter(control.t, spo2=95))
        await expect(page.locator("#spo2")).to_have_text("95")
    finally:
        await runner.cleanup()
