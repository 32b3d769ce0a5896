"""Take the README's screenshots of the console: a room view and the clinic overview.

Two room daemons read the device simulator over pseudo-terminals, on a Mosquitto broker of
their own; a nurse signs in, starts a session, confirms the pre-dose checklist and marks the
dose in one room, then headless Chromium photographs the room view (1440x900) and the clinic
overview. Run from the repository with the project's environment:

    .venv/bin/python scripts/screenshots.py [--out docs]

Needs Debian's chromium and mosquitto (the test set-up installs both).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from playwright.async_api import async_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sessiond.app import Daemon
from sessiond.clock import LoopClock
from sessiond.config import parse_config
from sessiond.console.auth import hash_password
from sessiond.sim.scenario import builtin_scenario
from sessiond.sim.simulator import Simulator
from tests.mosquitto import Mosquitto

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

CHROMIUM = "/usr/bin/chromium"
SPEED = 30.0
HEADLESS_AUDIO = ["--aout=alsa", "--alsa-audio-device=null", "--quiet"]


@contextlib.asynccontextmanager
async def room(work: Path, room_id: str, broker: int) -> AsyncIterator[Daemon]:
    config = parse_config(
        {
            "room": {"id": room_id},
            "mqtt": {"enabled": True, "port": broker, "discovery": False},
            "console": {"port": 0, "users": {"nurse": {"password_hash": hash_password("demo")}}},
            "records": {"path": str(work / f"{room_id}.sqlite")},
            "music": {"enabled": False},
            "alarm_audio": {"vlc_args": HEADLESS_AUDIO},
        },
        source=room_id,
    )
    clock = LoopClock(speed=SPEED)
    devices = {name: dev.decoder for name, dev in config.devices.items()}
    with Simulator(scenario=builtin_scenario("demo"), clock=clock, devices=devices) as sim:
        sim.start()
        paths = {name: sim.ports[name].path for name in devices}
        daemon = Daemon(config=config, clock=clock, device_paths=paths)
        tasks = [asyncio.create_task(sim.run()), asyncio.create_task(daemon.run())]
        try:
            async with asyncio.timeout(15):
                while daemon.console_port is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            yield daemon
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def session(http: aiohttp.ClientSession, base: str, *, dose: bool) -> None:
    r = await http.post(f"{base}/api/login", json={"user": "nurse", "password": "demo"})
    r.raise_for_status()
    (await http.post(f"{base}/api/session/start", json={"route": "iv"})).raise_for_status()
    if dose:
        items = (await (await http.get(f"{base}/api/status")).json())["checklist_items"]
        checked = [i["id"] for i in items["predose"]]
        body = {"kind": "predose", "checked": checked}
        (await http.post(f"{base}/api/checklists", json=body)).raise_for_status()
        (await http.post(f"{base}/api/session/dose", json={})).raise_for_status()
        await http.post(f"{base}/api/notes", json={"text": "Calm, eyes closed, music on."})


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "broker").mkdir()
        with Mosquitto(work / "broker") as broker:
            async with (
                room(work, "room-1", broker.port) as one,
                room(work, "room-2", broker.port) as two,
            ):
                jar = aiohttp.CookieJar(unsafe=True)
                async with aiohttp.ClientSession(cookie_jar=jar) as http:
                    base = f"http://127.0.0.1:{one.console_port}"
                    await session(http, base, dose=True)
                    await session(http, f"http://127.0.0.1:{two.console_port}", dose=False)
                    await asyncio.sleep(40)  # about 20 session minutes at 30x
                    # One cookie name for every console on this host: sign in to room-1 last.
                    r = await http.post(
                        f"{base}/api/login", json={"user": "nurse", "password": "demo"}
                    )
                    r.raise_for_status()
                    cookies = [{"name": c.key, "value": c.value, "url": base} for c in jar]
                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
                    context = await browser.new_context(viewport={"width": 1440, "height": 900})
                    await context.add_cookies(cookies)  # type: ignore[arg-type]
                    page = await context.new_page()
                    await page.goto(f"{base}/")
                    await page.mouse.click(5, 200)  # the gesture a browser wants for sound
                    await page.wait_for_timeout(3000)
                    await page.screenshot(path=str(out / "console-room.png"))
                    await page.goto(f"{base}/overview")
                    await page.wait_for_timeout(2500)
                    await page.screenshot(path=str(out / "console-overview.png"))
                    await browser.close()
    print(f"screenshots: {out / 'console-room.png'}, {out / 'console-overview.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"), help="folder for the PNGs")
    folder = parser.parse_args().out
    folder.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(folder))
