"""The console's page is native ES modules, one per panel: every one loads in Chromium, as
JavaScript, under the content policy, and none grows back into one big script."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.async_api import async_playwright, expect

from sessiond.console.server import JS_CONTENT_TYPE, STATIC_DIR
from tests.console_stub import PASSWORD
from tests.test_console_browser import CHROMIUM, serve

if TYPE_CHECKING:
    from playwright.async_api import ConsoleMessage, Error, Page, Response

#: A module longer than this is a sign that a panel should be split again.
MAX_MODULE_LINES = 600
#: Globals the page may add to the window: uPlot (a classic script) and the charts the
#: trend tests read. Modules share everything else by import.
PAGE_GLOBALS = {"uPlot", "sessiondCharts"}
#: Modules of the clinic overview page; every other module is the room console's.
OVERVIEW_MODULES = {"overview.js", "common.js"}

MODULES = sorted(p.name for p in STATIC_DIR.glob("*.js"))


def test_the_page_is_split_into_small_modules() -> None:
    """The console is modules of a few hundred lines each, console.js is gone, and the
    pages load their entry module as a module (no inline script for the content policy)."""
    assert "main.js" in MODULES
    assert "console.js" not in MODULES
    long = {name: n for name in MODULES if (n := _lines(STATIC_DIR / name)) > MAX_MODULE_LINES}
    assert long == {}
    for page, entry in (("index.html", "main.js"), ("overview.html", "overview.js")):
        html = (STATIC_DIR / page).read_text(encoding="utf-8")
        scripts = re.findall(r"<script\b[^>]*>", html)
        assert f'<script type="module" src="/static/{entry}"></script>' in html
        assert all(" src=" in tag for tag in scripts)  # nothing inline
        assert len([tag for tag in scripts if 'type="module"' in tag]) == 1


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


class _Watch:
    """What a page loaded and what went wrong on it."""

    def __init__(self, page: Page) -> None:
        self.scripts: dict[str, tuple[int, str]] = {}
        self.problems: list[str] = []
        page.on("response", self._response)
        page.on("console", self._console)
        page.on("pageerror", self._error)
        page.on("requestfailed", lambda request: self.problems.append(f"failed: {request.url}"))

    def _response(self, response: Response) -> None:
        path = response.url.split("?")[0]
        if response.status >= 400:
            self.problems.append(f"{response.status}: {path}")
        if path.endswith(".js"):
            kind = response.headers.get("content-type", "")
            self.scripts[path.rsplit("/static/", 1)[-1]] = (response.status, kind)

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type in ("error", "warning"):
            self.problems.append(f"{msg.type}: {msg.text}")

    def _error(self, error: Error) -> None:
        self.problems.append(str(error))


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")
async def test_every_module_loads_as_javascript_without_errors() -> None:
    """The console loads every module but the overview's, each with 200 and text/javascript,
    runs without an error or a content-policy report, adds no globals of its own, and signs
    in to a live room; the overview page loads its own module and the shared one."""
    _, _, runner, port = await serve()
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            # The window's own names on a page of the same origin without scripts.
            plain = await browser.new_page()
            await plain.goto(f"http://127.0.0.1:{port}/static/console.css")
            blank = set(await plain.evaluate("Object.getOwnPropertyNames(window)"))
            await plain.close()
            page = await browser.new_page()
            watch = _Watch(page)
            response = await page.goto(f"http://127.0.0.1:{port}/")
            assert response is not None
            assert "script-src 'self'" in response.headers["content-security-policy"]
            # Loaded (the modules ran before the load event): each came whole, as JavaScript.
            assert watch.problems == []
            console_modules = set(MODULES) - {"overview.js"}
            assert set(watch.scripts) == console_modules | {"vendor/uplot/uPlot.iife.min.js"}
            for name, (status, kind) in watch.scripts.items():
                assert (name, status, kind) == (name, 200, JS_CONTENT_TYPE)
            await expect(page.locator("#login-form")).to_be_visible()
            await page.fill("#login-user", "nurse1")
            await page.fill("#login-password", PASSWORD)
            await page.click("#login-button")
            await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
            await expect(page.locator("#room")).to_have_text("room-7")
            added = set(await page.evaluate("Object.getOwnPropertyNames(window)")) - blank
            assert added == PAGE_GLOBALS

            watch.scripts.clear()
            await page.goto(f"http://127.0.0.1:{port}/overview")
            await expect(page.get_by_test_id("overview-state")).to_have_text(
                re.compile("^No broker configured")
            )
            assert set(watch.scripts) == OVERVIEW_MODULES
            # Revalidated, as every asset is; a cached module is still JavaScript.
            assert {kind for _, kind in watch.scripts.values()} == {JS_CONTENT_TYPE}
            assert watch.problems == []
            await browser.close()
    finally:
        await runner.cleanup()
