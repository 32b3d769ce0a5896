"""The clinic overview: three room daemons and a nurses' station on one Mosquitto; every room
is a tile with its phase, values and highest alarm, fed only from the broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from playwright.async_api import async_playwright, expect

from sessiond.app import Daemon
from sessiond.clock import LoopClock
from sessiond.config import parse_config
from sessiond.console.auth import hash_password
from sessiond.console.overview import Overview
from tests.mosquitto import Mosquitto, available
from tests.test_console_browser import CHROMIUM

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.skipif(not available(), reason="Mosquitto is not installed")

USERS = {"ana": {"password_hash": hash_password("pw", iterations=1000)}}


def test_overview_folds_the_broker_topics() -> None:
    """State, alarm list, vitals and availability of each room make one tile; a station and
    malformed or foreign topics make none."""
    now = [100.0]
    overview = Overview("sessiond", clock=lambda: now[0])
    state = {"phase": "onset", "session": {"minutes_since_dose": 12.0}, "console": {"port": 1}}
    overview.on_message("sessiond/room-2/state", json.dumps(state).encode())
    overview.on_message("sessiond/room-2/alarm", json.dumps([
        {"id": "sensor_off", "priority": "medium", "state": "active"},
        {"id": "spo2_low", "priority": "high", "state": "active"},
    ]).encode())  # fmt: skip
    overview.on_message("sessiond/room-2/vitals", b'{"spo2": 84, "pr": 101, "sys": 150}')
    overview.on_message("sessiond/room-1/availability", b"offline")
    overview.on_message("sessiond/station/state", b'{"station": true}')
    overview.on_message("sessiond/room-3/state", b"not json")
    overview.on_message("other/room-4/state", b"{}")
    overview.on_message("sessiond/a/b/state", b"{}")
    now[0] += 120
    one, two = overview.snapshot()
    assert (one["room"], one["online"]) == ("room-1", False)
    assert two["room"] == "room-2"
    assert two["phase"] == "onset"
    assert two["minutes_since_dose"] == 14.0  # moved on by the 2 min since the state came
    assert (two["spo2"], two["pr"], two["sys"]) == (84, 101, 150)
    assert two["alarm"] == {"id": "spo2_low", "priority": "high", "state": "active", "device": None}
    assert two["alarms"] == 2
    overview.on_message("sessiond/room-2/state", b"")  # retained state cleared: gone
    assert [t["room"] for t in overview.snapshot()] == ["room-1"]


def config(tmp_path: Path, room: str, broker_port: int, *, devices: bool) -> Any:
    return parse_config(
        {
            "room": {"id": room},
            "mqtt": {"enabled": True, "port": broker_port, "discovery": False,
                     "state_min_interval_s": 0},
            "console": {"port": 0, "users": USERS},
            "records": {"path": str(tmp_path / f"{room}.sqlite")},
            "music": {"enabled": False},
            "alarm_audio": {"enabled": False},
            "devices": {"spo2": {"decoder": "masimo-ascii1"}} if devices else {},
        },
        source=room,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def clinic(tmp_path: Path) -> AsyncIterator[list[Daemon]]:
    """Three rooms (their oximeters unplugged: `device_lost`) and a station, one broker."""
    (tmp_path / "broker").mkdir()
    with Mosquitto(tmp_path / "broker") as broker:
        daemons = [
            Daemon(config=config(tmp_path, room, broker.port, devices=room != "station"),
                   clock=LoopClock(), device_paths={"spo2": str(tmp_path / "unplugged")})
            for room in ("room-1", "room-2", "room-3", "station")
        ]  # fmt: skip
        tasks = [asyncio.create_task(d.run()) for d in daemons]
        try:
            async with asyncio.timeout(10):
                while any(d.console_port is None for d in daemons):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            yield daemons
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def signed_in(http: aiohttp.ClientSession, port: int) -> str:
    base = f"http://127.0.0.1:{port}"
    r = await http.post(f"{base}/api/login", json={"user": "ana", "password": "pw"})
    assert r.status == 200
    return base


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")
async def test_a_station_shows_every_room_of_the_clinic(tmp_path: Path) -> None:
    """A station without a room serves the overview: three tiles with phase, time since
    dose and the highest alarm, coloured by priority; a tile links to its room's console."""
    async with clinic(tmp_path) as daemons:
        room_1, _, _, station = daemons
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            base = await signed_in(http, room_1.console_port or 0)
            r = await http.post(f"{base}/api/session/start", json={"route": "iv"})
            assert r.status == 200
            r = await http.post(f"{base}/api/session/dose", json={"reason": "on paper"})
            assert r.status == 200
            station_url = await signed_in(http, station.console_port or 0)
            rooms: list[dict[str, Any]] = []
            async with asyncio.timeout(20):
                while len(rooms) < 3 or not all(t["alarm"] for t in rooms):
                    await asyncio.sleep(0.2)
                    rooms = (await (await http.get(f"{station_url}/api/overview")).json())["rooms"]
            cookies = [{"name": c.key, "value": c.value, "url": station_url} for c in jar]
        assert [t["room"] for t in rooms] == ["room-1", "room-2", "room-3"]
        assert rooms[0]["phase"] == "onset"
        assert rooms[0]["minutes_since_dose"] is not None
        assert all(t["alarm"]["id"] == "device_lost" for t in rooms)

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            context = await browser.new_context(viewport={"width": 1440, "height": 900})
            await context.add_cookies(cookies)  # type: ignore[arg-type]
            page = await context.new_page()
            await page.goto(f"{station_url}/overview")
            tiles = page.locator("#tiles li")
            await expect(tiles).to_have_count(3)
            first = page.locator('#tiles [data-room="room-1"]')
            await expect(first).to_contain_text("onset")
            await expect(first).to_contain_text("min since dose")
            await expect(first).to_contain_text("!! MEDIUM Device lost: spo2")
            await expect(first).to_have_attribute("data-priority", "medium")
            await expect(first.locator(".tile-alarm")).to_have_css("animation-duration", "2s")
            href = await first.locator("a").get_attribute("href")
            assert href == f"http://127.0.0.1:{room_1.console_port}/"
            await page.screenshot(path=str(tmp_path / "overview.png"))
            await browser.close()
