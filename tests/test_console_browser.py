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
    DischargeReadiness,
    NibpFailed,
    Phase,
    Priority,
    Quality,
    Reading,
    RoomChanged,
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
        ("dose", {"reason": None, "user": "nurse1", "source": "console"}),
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


# ---- audio pause, BP, dose gate, notes, readiness and the room ----------------------------

#: Controls that need a signed-in nurse.
SIGNED_IN_CONTROLS = (
    "#pause-audio", "#measure-nibp", "#note-text", "#add-note", "#scene-select", "#scene-pin",
    "#set-scene", "#volume", "#volume-pin", "#set-volume",
)  # fmt: skip


def by(room: Room, name: str) -> dict[str, Any]:
    """The arguments of the last call to `name` the stub recorded."""
    calls = [args for call, args in room.control.calls if call == name]
    assert calls, f"no {name} call in {room.control.calls}"
    return calls[-1]


async def signed_in_with_session(room: Room) -> None:
    page = room.page
    for control in SIGNED_IN_CONTROLS:
        await expect(page.locator(control)).to_be_disabled()
    await page.fill("#login-user", "nurse1")
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-button")
    await expect(page.locator("#signed-in-user")).to_have_text("nurse1")
    await page.click("#start-session")
    await expect(page.locator("#phase")).to_have_text("baseline")
    await expect(page.locator("#bp-request")).to_contain_text("(session start)")
    await expect(page.locator("#discharge")).to_have_text("Not ready: no dose yet")


async def dose_over_the_gate(room: Room) -> None:
    """With `dose_gate` high the dose button asks for a reason and sends it."""
    page, control = room.page, room.control
    control.gate_closed = True
    room.bus.publish(
        AlarmTransition(t=control.t, alarm_id="dose_gate", priority=Priority.HIGH,
                        state=AlarmState.ACTIVE, phase=Phase.BASELINE, value=186.0, limit=180.0)
    )  # fmt: skip
    await expect(page.locator("#dose-gate-note")).to_be_visible()
    await expect(page.locator("#baseline")).to_have_text("not captured yet")
    await page.click("#mark-dose")
    dialog = page.locator("#dose-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("SYS 186 mmHg, limit 180")
    await expect(page.locator("#dose-confirm")).to_be_disabled()
    await page.click("#dose-cancel")  # changing one's mind sends nothing
    await expect(dialog).to_be_hidden()
    assert [c for c, _ in control.calls] == ["start"]

    await page.click("#mark-dose")
    await page.fill("#dose-reason", "  BP reviewed by the prescriber  ")
    await page.click("#dose-confirm")
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#phase")).to_have_text("onset")
    assert by(room, "dose") == {
        "reason": "BP reviewed by the prescriber", "user": "nurse1", "source": "console"
    }  # fmt: skip
    await expect(page.locator('#alarms [data-alarm-id="dose_gate"]')).to_have_count(0)
    await expect(page.locator("#dose-override")).to_be_visible()
    await expect(page.locator("#baseline")).to_have_text(
        "BP 128/82 \u00b7 SpO\u2082 97 % \u00b7 PR 72"
    )
    await expect(page.locator("#discharge")).to_have_text("Not ready")


async def pause_audio(room: Room) -> None:
    """Pausing shows a countdown on the session clock; the button stays pressed until it ends."""
    page, control = room.page, room.control
    button, state = page.locator("#pause-audio"), page.locator("#audio-state")
    await expect(state).to_have_text("Alarm audio on")
    await page.click("#pause-audio")
    await expect(state).to_have_attribute("data-paused", "true")
    await expect(state).to_have_text("Alarm audio paused \u00b7 resumes in 2:00")
    await expect(button).to_have_attribute("aria-pressed", "true")
    await expect(button).to_be_disabled()
    assert by(room, "pause") == {"user": "nurse1", "source": "console"}
    control.t += 75
    await expect(state).to_have_text("Alarm audio paused \u00b7 resumes in 0:45")
    control.t += 45
    await expect(state).to_have_attribute("data-paused", "false")
    await expect(button).to_have_attribute("aria-pressed", "false")
    await expect(button).to_be_enabled()


async def measure_now(room: Room) -> None:
    """Measure now sends the command; the panel shows the reading the module then sends."""
    page, control = room.page, room.control
    control.bp_result = (134, 86, 102, 70)
    await page.click("#measure-nibp")
    await expect(page.locator("#bp")).to_have_text("134/86")
    await expect(page.locator("#bp-map")).to_have_text("MAP 102")
    await expect(page.locator("#bp-detail")).to_contain_text("0:00 ago")
    await expect(page.locator("#bp-request")).to_have_text("0:00 ago (nurse)")
    # Onset: every 10 min from the last reading (the forced dose + 40 min comes later).
    await expect(page.locator("#bp-next")).to_have_text("in about 10:00")
    assert by(room, "nibp") == {"user": "nurse1", "source": "console"}
    control.t += 30
    room.bus.publish(NibpFailed(t=control.t, device="nibp", detail="E03 cuff leak"))
    await expect(page.locator("#bp-failure")).to_have_text(re.compile("0:00 ago: E03 cuff leak$"))
    await expect(page.locator("#bp-detail")).to_contain_text("0:30 ago")


async def test_dose_gate_pause_and_measure_now(room: Room) -> None:
    """Signed out the controls are off; signed in: override the gate, pause, measure now."""
    await signed_in_with_session(room)
    await dose_over_the_gate(room)
    await pause_audio(room)
    await measure_now(room)


async def add_note(room: Room) -> None:
    page = room.page
    await expect(page.locator("#add-note")).to_be_disabled()  # nothing typed yet
    await page.fill("#note-text", "Calm, listening to the music.")
    await page.click("#add-note")
    await expect(page.locator("#notes-info")).to_have_text("1 note \u00b7 last 0:00 ago")
    await expect(page.locator("#note-text")).to_have_value("")
    assert by(room, "note") == {
        "text": "Calm, listening to the music.", "user": "nurse1", "source": "console"
    }  # fmt: skip


async def readiness(room: Room) -> None:
    page, t = room.page, room.control.t
    room.bus.publish(DischargeReadiness(t=t, ready=False, unmet=("time since dose", "spo2")))
    await expect(page.locator("#discharge")).to_have_text("Not ready")
    await expect(page.locator("#discharge-unmet li")).to_have_text(
        ["Not long enough since the dose yet", re.compile("SpO. has not stayed at target")]
    )
    room.bus.publish(DischargeReadiness(t=t + 1, ready=True))
    await expect(page.locator("#discharge")).to_have_text("Ready for discharge")
    await expect(page.locator("#discharge")).to_have_attribute("data-ready", "ready")
    await expect(page.locator("#discharge-unmet li")).to_have_count(0)


async def room_controls(room: Room) -> None:
    """The scene selector and volume slider reach the control; the panel shows the room."""
    page, control = room.page, room.control
    room.bus.publish(control.room())
    await expect(page.locator("#room-scene")).to_have_text("onset")
    await expect(page.locator("#room-light")).to_have_text("25 % \u00b7 2400 K")
    await expect(page.locator("#room-override")).to_have_text("Following the phase")

    await page.select_option("#scene-select", "effect")
    await page.check("#scene-pin")
    await page.click("#set-scene")
    await expect(page.locator("#room-scene")).to_have_text("effect")
    await expect(page.locator("#room-override")).to_have_text("Manual setting (pinned)")
    assert by(room, "scene") == {
        "scene": "effect", "pinned": True, "user": "nurse1", "source": "console"
    }  # fmt: skip

    await page.locator("#volume").fill("12")
    await expect(page.locator("#volume-value")).to_have_text("12 %")
    await page.click("#set-volume")
    await expect(page.locator("#room-music")).to_have_text("effect \u00b7 volume 12 %")
    assert by(room, "volume") == {
        "volume_pct": 12, "pinned": False, "user": "nurse1", "source": "console"
    }  # fmt: skip

    await page.select_option("#scene-select", "")
    await page.uncheck("#scene-pin")
    await page.click("#set-scene")
    assert by(room, "scene") == {
        "scene": None, "pinned": False, "user": "nurse1", "source": "console"
    }  # fmt: skip
    await expect(page.locator("#room-scene")).to_have_text("onset")

    room.bus.publish(
        RoomChanged(t=control.t, scene="onset", light_pct=100.0, colour_temp_k=4000,
                    playlist="onset", volume_pct=12, ducked=True, override="alarm")
    )  # fmt: skip
    await expect(page.locator("#room-override")).to_have_text(
        "Alarm override: clinical light, music ducked"
    )
    await expect(page.locator("#room-music")).to_have_text("onset \u00b7 volume 12 % (ducked)")


async def alarm_styles(room: Room) -> None:
    """High flashes red at 2 Hz, medium yellow at 0.5 Hz, low cyan steady; latched marked."""
    page, t = room.page, room.control.t
    for alarm_id, priority, state in (
        ("spo2_low", Priority.HIGH, AlarmState.ACTIVE),
        ("pr_high", Priority.MEDIUM, AlarmState.LATCHED),
        ("signal_poor", Priority.LOW, AlarmState.ACTIVE),
    ):
        room.bus.publish(AlarmTransition(t=t, alarm_id=alarm_id, priority=priority, state=state))
    high = page.locator('#alarms [data-alarm-id="spo2_low"]')
    medium = page.locator('#alarms [data-alarm-id="pr_high"]')
    low = page.locator('#alarms [data-alarm-id="signal_poor"]')
    await expect(page.locator("#alarms li")).to_have_count(3)
    await expect(high).to_contain_text("*** HIGH")
    await expect(medium).to_contain_text("** MEDIUM")
    await expect(low).to_contain_text("! LOW")  # technical
    await expect(medium).to_have_class(re.compile(r"\blatched\b"))
    await expect(medium).to_contain_text("latched")
    await expect(high).to_have_css("animation-duration", "0.5s")
    await expect(medium).to_have_css("animation-duration", "2s")
    await expect(low).to_have_css("animation-name", "none")
    await expect(low).to_have_css("background-color", "rgb(38, 198, 218)")
    await page.emulate_media(reduced_motion="reduce")
    await expect(high).to_have_css("animation-name", "none")
    await expect(high).to_have_css("background-color", "rgb(229, 57, 53)")
    await expect(medium).to_have_css("animation-name", "none")


async def test_notes_readiness_room_and_alarm_styles(room: Room) -> None:
    """A note is sent, readiness shows, the room controls work and alarms look by priority."""
    await signed_in_with_session(room)
    room.control.t += 600
    await room.page.click("#mark-dose")
    await expect(room.page.locator("#phase")).to_have_text("onset")
    await add_note(room)
    await readiness(room)
    await room_controls(room)
    await alarm_styles(room)
