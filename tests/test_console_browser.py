"""The console page in a real headless Chromium: live values, sign-in, commands and alarms."""

from __future__ import annotations

import asyncio
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.async_api import Dialog, Page, async_playwright, expect

from sessiond.bus import Bus
from sessiond.config import AudioConfig, ConsoleConfig
from sessiond.console.server import create_console_app, start_console
from sessiond.model import (
    AlarmState,
    AlarmTransition,
    AudioPause,
    DeviceStatus,
    DischargeReadiness,
    NibpFailed,
    Phase,
    PhaseChanged,
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


async def serve(
    *,
    port: int = 0,
    t: float = 1000.0,
    settings: ConsoleConfig | None = None,
    audio: AudioConfig | None = None,
) -> tuple[Bus, StubControl, web.AppRunner, int]:
    bus = Bus()
    control = StubControl(bus=bus, t=t)
    app = create_console_app(
        bus=bus, control=control, users=USERS, room_id="room-7", settings=settings, audio=audio
    )
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


#: Keeps the session time of the last `tick` the page received, so a test can wait until
#: the page has seen a later clock.
TICK_HOOK = """
window.__tick = null;
const Real = window.WebSocket;
window.WebSocket = class extends Real {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (e) => {
      const msg = JSON.parse(e.data);
      if (msg.type === "tick") window.__tick = msg.t;
    });
  }
};
"""


@pytest.fixture
async def room(browser: Browser) -> AsyncIterator[Room]:
    bus, control, runner, port = await serve()
    try:
        page = await browser.new_page(viewport={"width": 1280, "height": 860})
        await page.add_init_script(TICK_HOOK)
        room = Room(bus=bus, control=control, runner=runner, port=port, page=page)

        def on_console(msg: ConsoleMessage) -> None:
            # Chromium logs each 4xx answer; the tests provoke 401, 409 and 429 on purpose.
            if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
                room.problems.append(msg.text)

        def on_error(error: Error) -> None:
            room.problems.append(str(error))

        page.on("console", on_console)
        page.on("pageerror", on_error)
        await page.goto(room.url)
        await expect(page.locator("#login-form")).to_be_visible()
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


async def log_in(room: Room) -> None:
    """Sign in as nurse1 and wait until the room is live."""
    page = room.page
    await page.fill("#login-user", "nurse1")
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-button")
    await expect(page.locator("#signed-in-user")).to_have_text("nurse1")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")


async def sign_in(room: Room) -> None:
    """Signed out the page is the form only; a wrong password is shown inline; the right one
    shows the room and the commands."""
    page = room.page
    await expect(page.locator("#room-view")).to_be_hidden()
    await expect(page.locator("#start-session")).to_be_hidden()
    await page.fill("#login-user", "nurse1")
    await page.fill("#login-password", "wrong")
    await page.click("#login-button")
    await expect(page.locator("#login-error")).to_have_text("Wrong user name or password.")
    await log_in(room)
    await expect(page.locator("#login-error")).to_be_hidden()
    await expect(page.locator("#room-view")).to_be_visible()
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
    # One session at a time: Start is off while this one runs.
    await expect(page.locator("#start-session")).to_be_disabled()
    # A rejected command is shown inline.
    control.reject = "oximeter not connected"
    await page.click("#measure-nibp")
    await expect(page.locator("#error")).to_have_text("oximeter not connected")
    control.reject = None


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
    await expect(page.get_by_test_id("ack-spo2_low")).to_be_hidden()
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
    await expect(page.locator("#start-session")).to_be_enabled()
    # The session's clocks stop at its end.
    await expect(page.locator("#window-text")).to_have_text("session ended")
    shown = await page.locator("#since-start").inner_text()
    room.control.t += 120
    await page.wait_for_function(f"() => window.__tick >= {room.control.t}")
    await expect(page.locator("#since-start")).to_have_text(shown)
    assert room.control.calls[-1] == ("end", {"user": "nurse1", "source": "console"})


async def test_console_page(room: Room, tmp_path: Path) -> None:
    """A nurse signs in, sees live values, starts a session, marks the dose and sees an alarm."""
    await sign_in(room)
    await see_live_values(room)
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
    await log_in(room)
    room.bus.publish(oximeter(room.control.t, spo2=96))
    await expect(page.locator("#spo2")).to_have_text("96")

    await room.runner.cleanup()
    await expect(page.locator("#offline-banner")).to_be_visible()

    bus, control, runner, _ = await serve(port=room.port, t=50.0)
    try:
        # A restarted daemon forgot every sign-in: the page asks for one again.
        await expect(page.locator("#login-form")).to_be_visible()
        await expect(page.locator("#login-error")).to_contain_text("sign in again")
        await log_in(room)
        await expect(page.locator("#offline-banner")).to_be_hidden()
        # The restarted daemon's status replaces what the page showed before.
        await expect(page.locator("#spo2")).to_have_text("---")
        bus.publish(oximeter(control.t, spo2=95))
        await expect(page.locator("#spo2")).to_have_text("95")
    finally:
        await runner.cleanup()


# ---- audio pause, BP, dose gate, notes, readiness and the room ----------------------------


def by(room: Room, name: str) -> dict[str, Any]:
    """The arguments of the last call to `name` the stub recorded."""
    calls = [args for call, args in room.control.calls if call == name]
    assert calls, f"no {name} call in {room.control.calls}"
    return calls[-1]


async def signed_in_with_session(room: Room) -> None:
    page = room.page
    await expect(page.locator("#room-view")).to_be_hidden()
    await log_in(room)
    for control in ("#note-text", "#add-note"):
        await expect(page.locator(control)).to_be_disabled()  # no session to note in yet
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
    # Criteria met inside the effect window: the page tells one story with the phase.
    await expect(page.locator("#discharge")).to_have_text(
        re.compile(r"^Criteria met · effect window ends in \d+ min$")
    )
    await expect(page.locator("#discharge")).to_have_attribute("data-ready", "pending")
    room.bus.publish(PhaseChanged(t=t + 1, phase=Phase.RECOVERY))
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
    await expect(high).to_have_css("background-color", "rgb(211, 47, 47)")
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


async def test_signed_out_page_shows_and_logs_nothing_of_the_room(browser: Browser) -> None:
    """Signed out: the form only, no socket, no 401 in the console; a lockout says how long."""
    bus, _, runner, port = await serve(settings=ConsoleConfig(login_max_failures=2))
    try:
        bus.publish(oximeter(1000.0, spo2=84))
        page = await browser.new_page(viewport={"width": 1280, "height": 860})
        messages: list[str] = []
        sockets: list[str] = []
        page.on("console", lambda msg: messages.append(f"{msg.type}: {msg.text}"))
        page.on("websocket", lambda ws: sockets.append(ws.url))
        await page.goto(f"http://127.0.0.1:{port}/")
        await expect(page.locator("#login-form")).to_be_visible()
        await expect(page.locator("#room-view")).to_be_hidden()
        await page.wait_for_load_state("networkidle")  # every request the page makes is done
        assert "84" not in await page.locator("body").inner_text()
        assert messages == []
        assert sockets == []
        await page.fill("#login-user", "nurse1")
        for _ in range(2):
            await page.fill("#login-password", "wrong")
            await page.click("#login-button")
        await expect(page.locator("#login-error")).to_have_text(
            "too many failed sign-ins: sign-in is locked, try again in 5 min."
        )
        await page.fill("#login-password", PASSWORD)
        await page.click("#login-button")
        await expect(page.locator("#login-error")).to_contain_text("try again in 5 min")
        await expect(page.locator("#room-view")).to_be_hidden()
    finally:
        await runner.cleanup()


# ---- the alarm presentation a nurse relies on ---------------------------------------------

#: Samples an element's colours on every animation frame for `ms`; returns each change.
SAMPLE_JS = """
async ([selector, ms]) => {
  const el = document.querySelector(selector);
  el.dataset.sampled = "1";
  const changes = [];
  let last = null;
  const start = performance.now();
  while (performance.now() - start < ms) {
    await new Promise(requestAnimationFrame);
    const now = document.querySelector(selector);
    if (now !== el) return { detached: true, changes };
    const style = getComputedStyle(el);
    const colour = `${style.backgroundColor}|${style.color}`;
    if (colour !== last) {
      changes.push(performance.now() - start);
      last = colour;
    }
  }
  return { detached: false, changes: changes.slice(1) };
}
"""


async def stream(room: Room, seconds: float, *, hz: float = 10.0, **values: Any) -> None:
    """Readings at `hz` and a moving session clock, as a live oximeter gives them."""
    for _ in range(int(seconds * hz)):
        room.control.t += 1 / hz
        room.bus.publish(oximeter(room.control.t, **values))
        await asyncio.sleep(1 / hz)


def raise_alarm(room: Room, alarm_id: str, priority: Priority, **more: Any) -> None:
    alarm = AlarmTransition(t=room.control.t, alarm_id=alarm_id, priority=priority,
                            state=AlarmState.ACTIVE, phase=Phase.ONSET, **more)  # fmt: skip
    room.bus.publish(alarm)


async def flash_changes(room: Room, selector: str, ms: int) -> dict[str, Any]:
    sampled, _ = await asyncio.gather(
        room.page.evaluate(SAMPLE_JS, [selector, ms]), stream(room, ms / 1000, spo2=80, pr=130)
    )
    return dict(sampled)


async def test_alarms_flash_steadily_while_readings_stream(room: Room) -> None:
    """Under 10 readings/s and the 1 s ticks, a medium alarm flashes at 0.5 Hz, a high one at
    2 Hz with even intervals, and the SpO2 numeric flashes with its high alarm; no row is
    ever rebuilt."""
    await log_in(room)
    raise_alarm(room, "pr_high", Priority.MEDIUM, value=130.0, limit=120.0)
    raise_alarm(room, "spo2_low", Priority.HIGH, value=84.0, limit=85.0)
    await expect(room.page.locator("#alarms li")).to_have_count(2)

    medium = await flash_changes(room, '#alarms [data-alarm-id="pr_high"]', 6000)
    assert not medium["detached"]
    # 0.5 Hz at 50 %: a change each second.
    assert 5 <= len(medium["changes"]) <= 7, medium
    gaps = [b - a for a, b in itertools.pairwise(medium["changes"])]
    assert all(850 <= g <= 1150 for g in gaps), gaps

    high = await flash_changes(room, '#alarms [data-alarm-id="spo2_low"]', 3000)
    assert not high["detached"]
    # 2 Hz at 50 %: a change each 250 ms (frames are ~16 ms apart).
    assert 10 <= len(high["changes"]) <= 13, high
    gaps = [b - a for a, b in itertools.pairwise(high["changes"])]
    assert all(200 <= g <= 300 for g in gaps), gaps

    numeric = await flash_changes(room, "#spo2", 2000)
    assert len(numeric["changes"]) >= 6, numeric
    await expect(room.page.locator("#pr-tile")).to_have_class(re.compile(r"\balarm-medium\b"))


async def test_acknowledge_is_a_steady_target_for_keyboard_and_hand(room: Room) -> None:
    """Focus stays on Acknowledge while readings stream; Enter acknowledges; a click held
    for 120 ms, as a hand does, lands."""
    page = room.page
    await log_in(room)
    raise_alarm(room, "spo2_low", Priority.HIGH, value=84.0, limit=85.0)
    raise_alarm(room, "pr_high", Priority.MEDIUM, value=130.0, limit=120.0)
    ack = page.get_by_test_id("ack-spo2_low")
    await expect(ack).to_be_visible()
    for _ in range(40):  # Tab from the top of the page reaches it
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.dataset.testid") == "ack-spo2_low":
            break
    else:
        pytest.fail("Acknowledge is not reachable by keyboard")
    await stream(room, 2.0, spo2=80)
    assert await page.evaluate("document.activeElement.dataset.testid") == "ack-spo2_low"
    await page.keyboard.press("Enter")
    await expect(page.locator('#alarms [data-alarm-id="spo2_low"]')).to_contain_text("acknowledged")
    assert by(room, "ack")["alarm_id"] == "spo2_low"

    box = await page.get_by_test_id("ack-pr_high").bounding_box()
    assert box is not None
    streaming = asyncio.create_task(stream(room, 1.0, pr=130))
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await page.mouse.down()
    await asyncio.sleep(0.12)
    await page.mouse.up()
    await streaming
    await expect(page.locator('#alarms [data-alarm-id="pr_high"]')).to_contain_text("acknowledged")
    assert by(room, "ack")["alarm_id"] == "pr_high"


async def test_alarm_text_follows_the_patient_and_the_log_keeps_the_story(room: Room) -> None:
    """The alarm shows the live value, its limit and how long; the numerics carry their
    alarm; the event log lists onset, escalation, acknowledgement and clearing."""
    page = room.page
    await log_in(room)
    raise_alarm(room, "spo2_low", Priority.MEDIUM, value=88.0, limit=90.0)
    raise_alarm(room, "spo2_low", Priority.HIGH, value=84.0, limit=85.0)
    await stream(room, 1.5, spo2=80)
    alarm = page.locator('#alarms [data-alarm-id="spo2_low"]')
    await expect(alarm.locator(".detail")).to_have_text("80 % (limit 85 %)")
    await expect(alarm.locator(".since")).to_have_text(re.compile(r"^for 0:0[1-2]$"))
    await expect(page.locator("#spo2-tile")).to_have_class(re.compile(r"\balarm-high\b"))
    room.bus.publish(Reading(t=room.control.t, device="nibp", sys=205, dia=120, map=150))
    raise_alarm(room, "bp_high", Priority.HIGH, value=205.0, limit=200.0)
    await expect(page.locator("#bp-tile")).to_have_class(re.compile(r"\balarm-high\b"))
    await expect(page.locator('#alarms [data-alarm-id="bp_high"] .detail')).to_have_text(
        "205/120 mmHg (limit 200 mmHg)"
    )
    await page.get_by_test_id("ack-spo2_low").click()
    room.bus.publish(AlarmTransition(t=room.control.t, alarm_id="spo2_low",
                                     priority=Priority.HIGH, state=AlarmState.CLEARED))  # fmt: skip
    log = page.locator("#event-log li span")
    await expect(log).to_have_text(
        [
            "SpO\u2082 low cleared",
            "SpO\u2082 low acknowledged \u00b7 nurse1",
            "*** HIGH BP high 205 mmHg (limit 200 mmHg)",
            "*** HIGH SpO\u2082 low escalated 84 % (limit 85 %)",
            "** MEDIUM SpO\u2082 low 88 % (limit 90 %)",
        ]
    )
    await expect(page.locator("#spo2-tile")).not_to_have_class(re.compile("alarm-"))
    await expect(page.locator("#alarm-announcer")).to_have_text(re.compile("^high priority alarm"))


async def test_device_chips_follow_device_lost_and_the_page_link(room: Room) -> None:
    """A chip turns lost with `device_lost` naming its device, and unknown while offline."""
    page = room.page
    await log_in(room)
    t = room.control.t
    room.bus.publish(DeviceStatus(t=t, device="spo2", connected=True))
    chip = page.locator('#devices [data-device="spo2"]')
    await expect(chip).to_have_class("up")
    raise_alarm(room, "device_lost", Priority.MEDIUM, device="spo2")
    await expect(chip).to_have_class("down")
    await expect(chip).to_have_text("spo2 lost: no data")
    await expect(page.locator('#alarms [data-alarm-id="device_lost"] .name')).to_have_text(
        "Device lost: spo2"
    )
    room.bus.publish(AlarmTransition(t=t, alarm_id="device_lost", priority=Priority.MEDIUM,
                                     state=AlarmState.CLEARED, device="spo2"))  # fmt: skip
    await expect(chip).to_have_class("up")
    await room.runner.cleanup()
    await expect(chip).to_have_class("unknown")
    await expect(page.locator("#offline-banner")).to_be_visible()


async def test_phone_layout_has_no_horizontal_overflow(browser: Browser) -> None:
    """At 390 px nothing is wider than the screen, and a high alarm's Acknowledge is on it."""
    bus, control, runner, port = await serve()
    try:
        page = await browser.new_page(viewport={"width": 390, "height": 844})
        await page.goto(f"http://127.0.0.1:{port}/")
        room = Room(bus=bus, control=control, runner=runner, port=port, page=page)
        await log_in(room)
        await page.click("#start-session")
        bus.publish(Reading(t=control.t, device="nibp", sys=205, dia=120, map=150, pr=140))
        bus.publish(oximeter(control.t, spo2=100, pr=188))
        for alarm_id in ("bp_high", "pr_high", "spo2_low"):
            raise_alarm(room, alarm_id, Priority.HIGH, value=205.0, limit=200.0)
        raise_alarm(room, "device_lost", Priority.MEDIUM, device="spo2")
        await expect(page.locator("#alarms li")).to_have_count(4)
        await page.evaluate("document.fonts.ready")  # laid out in its final fonts
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        wide = await page.evaluate(
            "[...document.querySelectorAll('body *')].filter(e => e.getClientRects().length && "
            "e.getBoundingClientRect().right > 390.5).map(e => e.id || e.className)"
        )
        assert wide == []
        for alarm_id in ("bp_high", "pr_high", "spo2_low"):
            box = await page.get_by_test_id(f"ack-{alarm_id}").bounding_box()
            assert box is not None
            assert box["x"] >= 0
            assert box["x"] + box["width"] <= 390
    finally:
        await runner.cleanup()


#: WCAG contrast of every visible, enabled text on the page (reduced motion: steady colours).
CONTRAST_JS = """
() => {
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
    }
    return [0, 0, 0];
  };
  const bad = [];
  for (const el of document.querySelectorAll("body *")) {
    if (!el.getClientRects().length || el.closest("[hidden], :disabled, .sr-only")) continue;
    const own = [...el.childNodes].filter((n) => n.nodeType === 3);
    const text = own.map((n) => n.data).join("").trim();
    if (!text) continue;
    const style = getComputedStyle(el);
    const [a, b] = [lum(rgb(style.color)), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    const name = el.id || el.className || el.tagName;
    if (ratio < (large ? 3 : 4.5)) bad.push(`${name}: ${text.slice(0, 30)} ${ratio.toFixed(2)}`);
  }
  return bad;
}
"""


async def test_accessibility_roles_live_region_and_contrast(room: Room) -> None:
    """The alarm list is a labelled list with an assertive announcer, and every text meets
    WCAG AA contrast (4.5:1, 3:1 for large text), signed out and in, with alarms shown."""
    page = room.page
    assert await page.evaluate(CONTRAST_JS) == []
    await log_in(room)
    await page.emulate_media(reduced_motion="reduce")
    await page.click("#start-session")
    room.bus.publish(DeviceStatus(t=room.control.t, device="nibp", connected=False, detail="x"))
    for alarm_id, priority in (("spo2_low", Priority.HIGH), ("pr_high", Priority.MEDIUM),
                               ("signal_poor", Priority.LOW)):  # fmt: skip
        raise_alarm(room, alarm_id, priority, value=100.0, limit=90.0)
    await expect(page.locator("#alarms li")).to_have_count(3)
    alarms = page.locator("#alarms")
    await expect(alarms).to_have_attribute("role", "list")
    await expect(alarms).to_have_attribute("aria-labelledby", "alarms-title")
    announcer = page.get_by_test_id("alarm-announcer")
    await expect(announcer).to_have_attribute("aria-live", "assertive")
    await expect(announcer).to_have_text(re.compile("low priority alarm: SpO. signal poor"))
    assert await page.evaluate(CONTRAST_JS) == []


# ---- alarm sound in the page ----------------------------------------------------------------

#: Records every oscillator the page starts: its pitch, its scheduled start and its end
#: (a pulse stopped before it started never sounded), and the burst it belongs to: the
#: oscillators one task starts together. `suspend` starts the context blocked, as a browser
#: does before any user gesture.
AUDIO_HOOK = """
window.__tones = [];
window.__burst = 0;
let open = false;
const create = AudioContext.prototype.createOscillator;
AudioContext.prototype.createOscillator = function () {
  const osc = create.call(this);
  const ctx = this;
  window.__ctx = ctx;
  if (!open) {
    open = true;
    window.__burst += 1;
    queueMicrotask(() => { open = false; });
  }
  const burst = window.__burst;
  const start = osc.start.bind(osc);
  const stop = osc.stop.bind(osc);
  let tone = null;
  osc.start = (when) => {
    tone = { pitch: osc.frequency.value, start: when, end: Infinity, burst };
    window.__tones.push(tone);
    start(when);
  };
  osc.stop = (when) => {
    const end = when === undefined ? ctx.currentTime : when;
    if (tone) tone.end = Math.min(tone.end, end);
    stop(when);
  };
  return osc;
};
if (window.__suspend) {
  const Real = AudioContext;
  window.AudioContext = function () {
    const ctx = new Real();
    ctx.suspend();
    return ctx;
  };
  window.AudioContext.prototype = Real.prototype;
}
"""

PITCH = {"high": 523.25, "medium": 440.0, "low": 392.0}
HIGH_BURST = [0.0, 0.25, 0.5, 1.0, 1.25, 2.25, 2.5, 2.75, 3.25, 3.5]

#: The bursts that sounded, in the page's own terms: [priority pitch, pulses, last end].
BURSTS_JS = """() => {
  const out = new Map();
  for (const t of window.__tones) {
    if (!(t.end > t.start + 0.001)) continue;
    const b = out.get(t.burst) || { pitch: t.pitch, pulses: 0, end: 0 };
    b.pulses += 1;
    b.end = Math.max(b.end, t.end);
    out.set(t.burst, b);
  }
  return [...out.values()];
}"""


async def sounded(page: Page) -> list[dict[str, Any]]:
    """The pulses that sounded (or are still to), oldest first."""
    tones: list[dict[str, Any]] = await page.evaluate(
        "window.__tones.filter((t) => t.end > t.start + 0.001)"
        ".map((t) => ({...t, end: t.end === Infinity ? 1e9 : t.end}))"
    )
    return tones


def bursts(tones: list[dict[str, Any]]) -> list[tuple[str, list[float]]]:
    """Pulses grouped into bursts (started together): the priority and the offsets."""
    by_pitch = {round(v, 2): k for k, v in PITCH.items()}
    out: list[tuple[str, list[float]]] = []
    last, first = None, 0.0
    for tone in tones:
        if tone["burst"] != last:
            out.append((by_pitch[round(tone["pitch"], 2)], []))
            last, first = tone["burst"], tone["start"]
        out[-1][1].append(round(tone["start"] - first, 2))
    return out


async def burst_heard(page: Page, priority: str, pulses: int, timeout_s: float = 10) -> None:
    """Wait until a burst of `priority` with `pulses` pulses has sounded to its end."""
    await page.wait_for_function(
        f"""() => ({BURSTS_JS})().some((b) =>
              Math.abs(b.pitch - {PITCH[priority]}) < 0.01 && b.pulses === {pulses}
              && b.end < 1e8 && window.__ctx.currentTime > b.end)""",
        timeout=timeout_s * 1000,
    )


async def burst_begun(page: Page, priority: str, timeout_s: float = 10) -> None:
    """Wait until the page has started a burst of `priority`."""
    await page.wait_for_function(
        f"""() => ({BURSTS_JS})().some((b) => Math.abs(b.pitch - {PITCH[priority]}) < 0.01)""",
        timeout=timeout_s * 1000,
    )


async def audio_clock_passes(page: Page, seconds: float) -> None:
    """Let the page's audio clock run `seconds` on: the window in which nothing may sound."""
    t0 = await page.evaluate("window.__ctx.currentTime")
    await page.wait_for_function(
        f"() => window.__ctx.currentTime >= {t0 + seconds}", timeout=(seconds + 10) * 1000
    )


@pytest.fixture
async def sound_room(browser: Browser) -> AsyncIterator[Room]:
    bus, control, runner, port = await serve(audio=AudioConfig(reminder_s=3))
    try:
        page = await browser.new_page()
        await page.add_init_script(AUDIO_HOOK)
        await page.goto(f"http://127.0.0.1:{port}/")
        room = Room(bus=bus, control=control, runner=runner, port=port, page=page)
        await log_in(room)
        await expect(page.locator("#sound-state")).to_have_text("Alarm sound on")
        yield room
    finally:
        await runner.cleanup()


async def test_alarm_sound_bursts_by_priority_one_stream(sound_room: Room) -> None:
    """LOW sounds 2 pulses, MEDIUM 3, HIGH 10 (3+2, pause, 3+2); a higher priority takes the
    one stream at once, and pulses never overlap."""
    room, page = sound_room, sound_room.page
    raise_alarm(room, "signal_poor", Priority.LOW)
    await burst_heard(page, "low", 2)
    raise_alarm(room, "pr_high", Priority.MEDIUM, value=130.0, limit=120.0)
    await burst_heard(page, "medium", 3)
    raise_alarm(room, "spo2_low", Priority.HIGH, value=84.0, limit=85.0)
    await burst_heard(page, "high", 10)
    heard = bursts(await sounded(page))
    assert heard[:3] == [("low", [0.0, 0.3]), ("medium", [0.0, 0.3, 0.6]), ("high", HIGH_BURST)]
    tones = await sounded(page)
    for one, two in itertools.pairwise(sorted(tones, key=lambda t: t["start"])):
        assert one["end"] <= two["start"] + 1e-6  # one stream: never two pulses at once


async def test_acknowledge_and_pause_silence_and_reminders_come_back(sound_room: Room) -> None:
    """Acknowledging the high alarm stops its burst at once; the medium one then sounds;
    pause silences everything; an acknowledged alarm that stays re-sounds as a reminder."""
    room, page = sound_room, sound_room.page
    raise_alarm(room, "pr_high", Priority.MEDIUM, value=130.0, limit=120.0)
    raise_alarm(room, "spo2_low", Priority.HIGH, value=84.0, limit=85.0)
    # The high burst is on (a medium one may have begun first; the high one interrupts it).
    await burst_begun(page, "high")
    await page.get_by_test_id("ack-spo2_low").click()
    await burst_heard(page, "medium", 3)
    heard = bursts(await sounded(page))
    highs = [offsets for priority, offsets in heard if priority == "high"]
    assert len(highs) == 1
    assert len(highs[0]) < 10  # cut short by the acknowledgement
    assert heard[-1] == ("medium", [0.0, 0.3, 0.6])
    await page.get_by_test_id("ack-pr_high").click()
    await page.click("#pause-audio")
    await expect(page.locator("#sound-state")).to_have_text("Alarm sound paused")
    count = len(await sounded(page))
    await audio_clock_passes(page, 1.5)
    assert len(await sounded(page)) == count  # paused: silence
    before = len(bursts(await sounded(page)))
    room.bus.publish(AudioPause(t=room.control.t, paused=False, reason="nurse"))
    await expect(page.locator("#sound-state")).to_have_text("Alarm sound on")
    # Both acknowledged, both still active: after reminder_s (3 s) each sounds one burst
    # again, one at a time.
    await burst_heard(page, "high", 10)
    reminders = bursts(await sounded(page))[before:]
    assert ("high", HIGH_BURST) in reminders
    assert len(reminders) <= 3
    # Cleared: no more reminders.
    for alarm_id in ("spo2_low", "pr_high"):
        gone = AlarmTransition(t=room.control.t, alarm_id=alarm_id, priority=Priority.HIGH,
                               state=AlarmState.CLEARED)  # fmt: skip
        room.bus.publish(gone)
    await expect(page.locator("#alarms li")).to_have_count(0)
    count = len(await sounded(page))
    await audio_clock_passes(page, 3.5)
    assert len(await sounded(page)) == count


async def test_blocked_sound_is_said_plainly_until_a_click(browser: Browser) -> None:
    """A browser that blocks audio until a gesture: the page says so, and one click on
    'Enable alarm sound' (or anywhere) turns it on; an alarm then sounds."""
    bus, control, runner, port = await serve()
    try:
        page = await browser.new_page()
        await page.add_init_script("window.__suspend = true;" + AUDIO_HOOK)
        await page.goto(f"http://127.0.0.1:{port}/")
        room = Room(bus=bus, control=control, runner=runner, port=port, page=page)
        await log_in(room)
        await page.reload()  # signed in already, no gesture on this page yet
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        state = page.locator("#sound-state")
        await expect(state).to_have_text(re.compile("^Alarm sound is blocked by the browser"))
        await expect(state).to_have_attribute("data-sound", "blocked")
        raise_alarm(room, "spo2_low", Priority.HIGH, value=84.0, limit=85.0)
        await expect(page.locator("#alarms li")).to_have_count(1)
        # Blocked audio has no running clock: the page's own clock gives the window.
        t0 = await page.evaluate("performance.now()")
        await page.wait_for_function(f"() => performance.now() >= {t0 + 500}")
        assert await sounded(page) == []
        await page.get_by_test_id("sound-enable").click()
        await expect(state).to_have_text("Alarm sound on")
        await expect(page.get_by_test_id("sound-enable")).to_be_hidden()
        await burst_begun(page, "high")
        assert bursts(await sounded(page))[0][0] == "high"
    finally:
        await runner.cleanup()
