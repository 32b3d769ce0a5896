"""Manual entries, checklists and notes read back from the record: the monitor's rules, the
console's API over real HTTP with a real recorder, and the page in Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import ClientSession, CookieJar
from playwright.async_api import Page, async_playwright, expect

from sessiond.bus import Bus
from sessiond.config import Config
from sessiond.console.server import create_console_app, start_console
from sessiond.model import NurseAction, Reading, Route
from sessiond.records.read import RecordReader
from sessiond.records.store import Recorder
from sessiond.session.commands import CommandRejected
from sessiond.session.monitor import MANUAL_DEVICE, Monitor
from tests.console_stub import DISCHARGE, PREDOSE, USERS, StubControl
from tests.test_console import sign_in
from tests.test_console_browser import CHROMIUM, log_in

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


# ---- the monitor's rules ------------------------------------------------------------------


def started(*, gate: bool = True) -> Monitor:
    m = Monitor(config=Config(), streaming=["spo2"], nibp=["nibp"], predose_gate=gate)
    m.start_session(0.0, session_id="s", route=Route.IV, user="ana", source="console")
    return m


def test_the_predose_checklist_gates_the_dose() -> None:
    """No checklist, or one with items not done: the dose needs a reason, recorded with what
    was missing; a complete checklist lets the dose through."""
    m = started()
    with pytest.raises(CommandRejected, match=r"pre-dose checklist is not complete \(fasting"):
        m.mark_dose(10.0, user="ana", source="console")
    partial = [i for i in PREDOSE if i != "escort"]
    (action,) = m.checklist(20.0, kind="predose", checked=partial, reason=None, user="ana",
                            source="console")  # fmt: skip
    assert isinstance(action, NurseAction)
    assert action.detail == {"kind": "predose", "checked": partial, "missing": ["escort"]}
    with pytest.raises(CommandRejected, match=r"\(escort\)"):
        m.mark_dose(30.0, user="ana", source="console")
    dose = m.mark_dose(40.0, user="ana", source="console", reason="escort phoned, on the way")[0]
    assert isinstance(dose, NurseAction)
    assert dose.detail == {
        "override_reason": "escort phoned, on the way", "checklist_missing": ["escort"]
    }  # fmt: skip
    with pytest.raises(CommandRejected, match="closed"):
        m.checklist(50.0, kind="predose", checked=list(PREDOSE), reason=None, user="ana",
                    source="console")  # fmt: skip

    complete = started()
    complete.checklist(1.0, kind="predose", checked=list(PREDOSE), reason=None, user="bo",
                       source="console")  # fmt: skip
    dosed = complete.mark_dose(2.0, user="bo", source="console")[0]
    assert isinstance(dosed, NurseAction)
    assert dosed.detail == {}
    assert started(gate=False).mark_dose(1.0, user="bo", source="replay")  # replay doses as told


def test_discharge_sign_off_needs_the_dose_and_every_item() -> None:
    """Sign-off comes after the dose, with every item (or a reason); the daemon's readiness
    at that moment goes into the record beside it."""
    m = started(gate=False)
    with pytest.raises(CommandRejected, match="after the dose"):
        m.checklist(1.0, kind="discharge", checked=list(DISCHARGE), reason=None, user="ana",
                    source="console")  # fmt: skip
    m.mark_dose(2.0, user="ana", source="console")
    with pytest.raises(CommandRejected, match=r"not complete \(alert, instructions\)"):
        m.checklist(3.0, kind="discharge", checked=["escort_present"], reason=None, user="ana",
                    source="console")  # fmt: skip
    with pytest.raises(CommandRejected, match="not on the discharge checklist: fasting"):
        m.checklist(3.0, kind="discharge", checked=["fasting_solids"], reason=None, user="ana",
                    source="console")  # fmt: skip
    (action,) = m.checklist(4.0, kind="discharge", checked=list(DISCHARGE), reason=None,
                            user="ana", source="console")  # fmt: skip
    assert isinstance(action, NurseAction)
    assert action.detail["ready"] is False  # not ready yet: written beside the sign-off
    assert "unmet" in action.detail


def test_a_bp_by_hand_is_a_reading_of_its_own_device() -> None:
    """A manual BP is recorded as an attributed entry and a reading from `manual`."""
    m = started()
    events = m.add_entry(5.0, entry={"kind": "bp", "sys": 150, "dia": 95, "pr": 80}, user="ana",
                         source="console")  # fmt: skip
    action, reading = events
    assert isinstance(action, NurseAction)
    assert (action.action, action.user) == ("entry", "ana")
    assert isinstance(reading, Reading)
    assert (reading.device, reading.sys, reading.dia, reading.pr) == (MANUAL_DEVICE, 150, 95, 80)
    with pytest.raises(CommandRejected, match="unknown entry kind"):
        m.add_entry(6.0, entry={"kind": "weight"}, user="ana", source="console")


# ---- the API, with a real record -----------------------------------------------------------


class FakeClock:
    def __init__(self, control: StubControl) -> None:
        self._control = control
        self._origin = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)

    def now(self) -> float:
        return self._control.t

    def wall(self, t: float) -> datetime:
        return self._origin + timedelta(seconds=t)


@contextlib.asynccontextmanager
async def recorded(tmp_path: Path, **app: Any) -> AsyncIterator[tuple[StubControl, int, Recorder]]:
    """A console over the stub with a real recorder and record reader on `tmp_path`."""
    bus = Bus()
    control = StubControl(bus=bus)
    path = tmp_path / "record.sqlite"
    recorder = Recorder(path=path, clock=FakeClock(control), room_id="room-7")
    await recorder.open()
    recording = asyncio.create_task(recorder.run(bus.subscribe("recorder", maxsize=10_000)))
    reader = RecordReader(path, bp_devices=frozenset({"nibp"}))
    application = create_console_app(
        bus=bus, control=control, users=USERS, room_id="room-7", records=reader, **app
    )
    runner, port = await start_console(application, host="127.0.0.1", port=0)
    try:
        yield control, port, recorder
    finally:
        await runner.cleanup()
        bus.close()
        await recording
        reader.close()
        await recorder.close()


async def test_entries_and_notes_are_read_back_from_the_record(tmp_path: Path) -> None:
    """Notes (with their text), manual entries and checklists come back from SQLite,
    attributed and in order; a bad entry is refused naming the field."""
    async with recorded(tmp_path) as (control, port, recorder):
        jar = CookieJar(unsafe=True)
        async with ClientSession(base_url=f"http://127.0.0.1:{port}", cookie_jar=jar) as client:
            await sign_in(client)
            async with client.get("/api/session/entries") as resp:
                assert await resp.json() == {"session_id": None, "entries": []}
            async with client.post("/api/session/start", json={"route": "iv"}) as resp:
                assert resp.status == 200
            posts: list[tuple[str, dict[str, Any]]] = [
                ("/api/notes", {"text": "Calm, eyes closed"}),
                ("/api/entries", {"entry": {"kind": "bp", "sys": 152, "dia": 96, "pr": 78}}),
                ("/api/entries", {"entry": {"kind": "side_effect", "effect": "nausea",
                                            "severity": "mild", "text": "after music change"}}),
                ("/api/entries", {"entry": {"kind": "dose", "route": "im", "amount_mg": 25.5}}),
                ("/api/checklists", {"kind": "predose", "checked": ["consent", "escort"]}),
            ]  # fmt: skip
            for path, body in posts:
                control.t += 60
                async with client.post(path, json=body) as resp:
                    assert resp.status == 200, await resp.text()
            bad: list[tuple[str, dict[str, Any], str]] = [
                ("/api/entries", {"entry": {"kind": "bp", "sys": 90, "dia": 95}}, "dia: must be"),
                ("/api/entries", {"entry": {"kind": "side_effect", "effect": "bored",
                                            "severity": "mild"}}, "entry.side_effect.effect"),
                ("/api/entries", {"entry": {"kind": "dose", "route": "iv", "amount_mg": 0}},
                 "entry.dose.amount_mg"),
                ("/api/checklists", {"kind": "lunch", "checked": []}, "kind:"),
            ]  # fmt: skip
            for path, body, error in bad:
                async with client.post(path, json=body) as resp:
                    assert resp.status == 400
                    assert (await resp.json())["error"].startswith(error)
            assert await recorder.sync()  # everything published so far is on disk
            async with client.get("/api/session/entries") as resp:
                got: dict[str, Any] = await resp.json()
    assert got["session_id"] == "sess-1"
    rows = [{k: v for k, v in e.items() if k not in ("wall", "source")} for e in got["entries"]]
    assert rows == [
        {"t": 1060.0, "action": "note", "user": "nurse1", "text": "Calm, eyes closed"},
        {"t": 1120.0, "action": "entry", "user": "nurse1", "kind": "bp", "sys": 152, "dia": 96,
         "pr": 78},
        {"t": 1180.0, "action": "entry", "user": "nurse1", "kind": "side_effect",
         "effect": "nausea", "severity": "mild", "text": "after music change"},
        {"t": 1240.0, "action": "entry", "user": "nurse1", "kind": "dose", "route": "im",
         "amount_mg": 25.5, "drug": "ketamine"},
        {"t": 1300.0, "action": "checklist", "user": "nurse1", "kind": "predose",
         "checked": ["consent", "escort"], "missing": [i for i in PREDOSE
                                                       if i not in ("consent", "escort")]},
    ]  # fmt: skip
    assert got["entries"][0]["wall"] == "2026-12-04T09:17:40+00:00"


# ---- the page ----------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")
async def test_checklists_gate_the_dose_and_entries_show_in_the_page(tmp_path: Path) -> None:
    """The page's pre-dose checklist gates Mark dose (a reason for what is missing), the BP
    schedule lists the phase's readings, entries are read back, and discharge is signed off."""
    async with (
        recorded(tmp_path, predose_gate=True) as (control, port, _recorder),
        async_playwright() as pw,
    ):
        control.checklist_gate = True
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = await browser.new_page(viewport={"width": 1440, "height": 900})
        await page.goto(f"http://127.0.0.1:{port}/")
        from tests.test_console_browser import Room  # noqa: PLC0415

        room = Room(bus=control.bus, control=control, runner=None, port=port, page=page)  # type: ignore[arg-type]
        await log_in(room)
        await checklist_gates_the_dose(page, control)
        await entries_show(page)
        await discharge_sign_off(page, control)
        await browser.close()


async def checklist_gates_the_dose(page: Page, control: StubControl) -> None:
    await page.click("#start-session")
    panel = page.get_by_test_id("predose-panel")
    await expect(panel).to_be_visible()
    await expect(page.get_by_test_id("dose-gate-note")).to_contain_text("checklist")
    for item in PREDOSE[:-1]:
        await page.get_by_test_id(f"predose-{item}").check()
    await page.click("#predose-confirm")
    await expect(page.get_by_test_id("predose-state")).to_contain_text(
        "not done: Baseline BP taken"
    )
    await page.click("#mark-dose")
    dialog = page.locator("#dose-dialog")
    await expect(dialog).to_contain_text("pre-dose checklist is not complete: Baseline BP")
    await page.click("#dose-cancel")
    await page.get_by_test_id("predose-baseline_bp").check()
    await page.click("#predose-confirm")
    await expect(page.get_by_test_id("predose-state")).to_contain_text("complete")
    control.t += 600
    await page.click("#mark-dose")  # complete: no dialog
    await expect(page.locator("#phase")).to_have_text("onset")
    await expect(panel).to_be_hidden()
    plan = page.get_by_test_id("bp-plan").locator("li")
    await expect(plan.first).to_have_text(re.compile(r"^(due now|in \d+:\d\d) · dose \+ \d+ min$"))
    await expect(plan).to_have_count(4)  # dose + 0, 10, 20 and the end of onset
    await expect(plan.last).to_have_text(re.compile(r"^onset ends in 30:00 \(dose \+ 30 min\)$"))


async def entries_show(page: Page) -> None:
    await page.locator("#entry-forms summary").click()
    await page.fill("#bp-sys", "148")
    await page.fill("#bp-dia", "92")
    await page.get_by_test_id("entry-bp-add").click()
    await page.select_option("#effect", "dissociation")
    await page.select_option("#severity", "moderate")
    await page.get_by_test_id("entry-effect-add").click()
    await page.fill("#note-text", "Talking about her garden")
    await page.click("#add-note")
    entries = page.get_by_test_id("entries").locator("li span:not(.who)")
    await expect(entries.first).to_have_text("Note: Talking about her garden")
    await expect(entries.nth(1)).to_have_text("Side effect: dissociation (moderate)")
    await expect(entries.nth(2)).to_have_text("BP by hand 148/92")
    await expect(page.locator("#bp")).to_have_text("148/92")
    # A reload reads the same back from the record.
    await page.reload()
    await expect(entries.first).to_have_text("Note: Talking about her garden")


async def discharge_sign_off(page: Page, control: StubControl) -> None:
    entries = page.get_by_test_id("entries").locator("li span:not(.who)")
    signoff = page.get_by_test_id("discharge-signoff")
    await expect(signoff).to_be_disabled()
    for item in DISCHARGE:
        await page.get_by_test_id(f"discharge-{item}").check()
    await signoff.click()
    await expect(page.get_by_test_id("discharge-signed")).to_contain_text("Signed off by nurse1")
    await expect(entries.first).to_have_text("Discharge signed off")
    assert ("checklist", {"kind": "discharge", "checked": list(DISCHARGE), "reason": None,
                              "user": "nurse1", "source": "console"}) in control.calls  # fmt: skip
