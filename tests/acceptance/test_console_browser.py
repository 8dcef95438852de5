"""The web console in a real browser: Debian's Chromium driven by Playwright, on a live server.

Never a downloaded browser: Chromium is the system's (`/usr/bin/chromium`,
package `chromium`). Without it, and without root to install it, these tests
are skipped and say why; `.ci/run` installs it. `CONSOLE_SCREENSHOTS=<folder>`
also saves every page at 1280 and 390 pixels wide into that folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from service.ops import keys
from tests.acceptance.conftest import free_port, start_server, stop_server
from tests.helpers import API_KEY, OTHER_API_KEY

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WIDTHS = (1280, 390)

try:
    from playwright.async_api import Browser, Page, async_playwright
except ImportError:  # pragma: no cover - the dev extras install it
    async_playwright = None

if not CHROMIUM.exists():
    pytestmark = pytest.mark.skip(
        reason="Chromium is not installed at /usr/bin/chromium (Debian package `chromium`;"
        " .ci/run installs it as root): the console's browser tests did not run"
    )
elif async_playwright is None:
    pytestmark = pytest.mark.skip(reason="playwright is not installed (pip install -e '.[dev]')")


def _api(base_url: str, method: str, path: str, body: Any = None, key: str = API_KEY) -> Any:
    """A JSON call to the live server's API."""
    request = urllib.request.Request(  # noqa: S310 - our own live server on 127.0.0.1
        base_url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        return json.loads(answer.read() or b"null")


class Console:
    """The live server, its data, and where the screenshots go."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        folder = os.environ.get("CONSOLE_SCREENSHOTS")
        self.shots = Path(folder) if folder else None

    def workflow(self, tests: int, delay: float, key: str = API_KEY) -> tuple[str, list[str]]:
        """A workflow of slow `function` tests: the first half pass, the rest fail."""
        workflow = _api(self.base_url, "POST", "/v1/workflows", {"name": "Invoices"}, key)
        block = _api(
            self.base_url,
            "POST",
            "/v1/workflows/blocks",
            {
                "workflow_id": workflow["id"],
                "type": "function",
                "label": "Extract vendor",
                "config": {"entrypoint": "tests.run_functions:slow_invoice"},
            },
            key,
        )
        test_ids = []
        for n in range(tests):
            name = "ACME" if n < (tests + 1) // 2 else "Other"
            test = _api(
                self.base_url,
                "POST",
                "/v1/workflows/tests",
                {
                    "workflow_id": workflow["id"],
                    "target": {"type": "block", "block_id": block["id"]},
                    "name": f"invoice {n} from {name}",
                    "source": {
                        "type": "manual",
                        "handle_inputs": {
                            "input": {"type": "json", "data": {"name": name, "delay": delay}}
                        },
                    },
                    "assertion": {
                        "target": {"output_handle_id": "output-json-0", "path": "vendor"},
                        "condition": {"kind": "equals", "expected": {"name": "ACME"}},
                    },
                },
                key,
            )
            test_ids.append(test["id"])
        return workflow["id"], test_ids

    def run(self, workflow_id: str, key: str = API_KEY) -> str:
        """Start a run through the API; its id."""
        body = {"workflow_id": workflow_id}
        run_id: str = _api(self.base_url, "POST", "/v1/workflows/tests/runs", body, key)["id"]
        return run_id

    def wait_for_end(self, run_id: str, within: float = 60) -> dict[str, Any]:
        """The run, once terminal."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            run = _api(self.base_url, "GET", f"/v1/workflows/tests/runs/{run_id}")
            if run["lifecycle"]["status"] in ("completed", "cancelled", "error"):
                return run  # type: ignore[no-any-return]
            time.sleep(0.1)
        pytest.fail(f"run {run_id} did not end within {within} s")

    async def screenshots(self, page: Page, name: str) -> None:
        """The page at each width, into CONSOLE_SCREENSHOTS (when set)."""
        if self.shots is None:
            return
        self.shots.mkdir(parents=True, exist_ok=True)
        for width in WIDTHS:
            await page.set_viewport_size({"width": width, "height": 900})
            await page.screenshot(path=str(self.shots / f"{name}-{width}.png"), full_page=True)
        await page.set_viewport_size({"width": 1280, "height": 900})


@pytest.fixture
def console(database_url: str) -> Iterator[Console]:
    """A live server (runner inside, slow test functions allowed) and a second organisation."""

    async def other_organisation() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            other = await keys.create_organisation(conn, "other")
            await keys.store_key(conn, other, OTHER_API_KEY, "other")
        finally:
            await conn.close()

    process, base_url = start_server(
        database_url,
        BOOTSTRAP_API_KEY=API_KEY,
        FUNCTION_MODULES="tests.run_functions",
        RUNNER_CONCURRENCY="4",
        RUNNER_BATCH="4",
        SHUTDOWN_GRACE_S="3",
    )
    try:
        asyncio.run(other_organisation())
        yield Console(base_url)
        # A stop while a test function is still running has been seen to hang the
        # server's shutdown (reported apart): let the cancelled runs' tests finish.
        asyncio.run(_no_test_running(database_url))
    finally:
        stop_server(process)


async def _no_test_running(database_url: str, within: float = 20) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            running = await conn.fetchval(
                "SELECT count(*) FROM test_results WHERE status = 'running'"
            )
            if not running:
                return
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Debian Chromium (never a downloaded browser)."""
    assert async_playwright is not None
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        yield launched
        await launched.close()


async def signed_in(browser: Browser, console: Console, key: str = API_KEY) -> Page:
    """A new browser page, signed in through the form."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(console.base_url + "/")
    assert "/console/sign-in" in page.url
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(re.compile(r".*/console/runs$"))
    return page


async def test_sign_in_and_open_every_page(console: Console, browser: Browser) -> None:
    """Sign in, then every page opens, keyboard first, with local times and no key anywhere."""
    workflow_id, test_ids = console.workflow(tests=4, delay=0.01)
    run_id = console.run(workflow_id)
    console.wait_for_end(run_id)
    second = console.run(workflow_id)
    console.wait_for_end(second)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(console.base_url + "/console/sign-in")
    await console.screenshots(page, "sign-in")
    # Keyboard only: the key field has focus, Enter submits.
    await page.keyboard.type(API_KEY)
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r".*/console/runs$"))
    cookies = await context.cookies()
    assert [("console_session", True, "Strict")] == [
        (c["name"], c["httpOnly"], c["sameSite"]) for c in cookies
    ]
    assert API_KEY not in json.dumps(cookies)
    assert 2 <= await page.locator("table.runs tbody tr").count()
    # Times are shown in the browser's zone, not as raw RFC 3339.
    first_time = page.locator("table.runs time").first
    assert "T" not in await first_time.inner_text()
    await console.screenshots(page, "runs")
    # The skip link is the first thing the keyboard reaches.
    await page.keyboard.press("Tab")
    assert "Skip to content" == await page.evaluate("document.activeElement.textContent")

    pages = {
        "workflows": "/console/workflows",
        "workflow": f"/console/workflows/{workflow_id}",
        "run": f"/console/runs/{second}",
        "run-failed": f"/console/runs/{second}?verdict=failed",
        "history": f"/console/runs/{second}/history?at=1",
        "test": f"/console/tests/{test_ids[-1]}",
    }
    for name, path in pages.items():
        response = await page.goto(console.base_url + path)
        assert response is not None
        assert 200 == response.status, path
        assert await page.locator("h1").count() == 1
        assert API_KEY not in await page.content()
        await console.screenshots(page, name)
        # At 390 px nothing is wider than the window.
        await page.set_viewport_size({"width": 390, "height": 900})
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390, path
        await page.set_viewport_size({"width": 1280, "height": 900})
    # The run page links each result; the result page shows the diff.
    await page.goto(console.base_url + f"/console/runs/{second}?verdict=failed")
    await page.locator("table.results tbody a").first.click()
    await page.wait_for_url(re.compile(r".*/console/results/.*"))
    assert await page.locator("pre.diff .d-actual").count() >= 1
    await console.screenshots(page, "result")
    # What changed: nothing newly failing, the failing half still failing.
    await page.goto(console.base_url + f"/console/runs/{second}")
    assert "2" == await page.locator(".change-still_failing .count").inner_text()
    assert "0" == await page.locator(".change-newly_failing .count").inner_text()
    # At 390 px nothing is wider than the window but the tables' own scrollers.
    await page.set_viewport_size({"width": 390, "height": 900})
    overflow = await page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 390


async def test_start_a_run_and_watch_its_counts_move_live(
    console: Console, browser: Browser
) -> None:
    """From the workflow page: the run page's counts move without a reload, to completion."""
    workflow_id, _ = console.workflow(tests=16, delay=0.25)
    page = await signed_in(browser, console)
    await page.goto(console.base_url + f"/console/workflows/{workflow_id}")
    await page.get_by_role("button", name="Run all tests of the workflow").click()
    await page.wait_for_url(re.compile(r".*/console/runs/wftestrun_[^/]+$"))
    await page.evaluate("window.notReloaded = true")
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        passed = await page.locator('[data-count="passed"]').inner_text()
        failed = await page.locator('[data-count="failed"]').inner_text()
        if not seen or seen[-1] != (passed, failed):
            seen.append((passed, failed))
        status = await page.locator("[data-status]").inner_text()
        if status == "completed":
            break
        await asyncio.sleep(0.05)
    await console.screenshots(page, "run-finished")
    assert "completed" == await page.locator("[data-status]").inner_text()
    # Read again: the repaint that showed `completed` may have come after the last read.
    final = (
        await page.locator('[data-count="passed"]').inner_text(),
        await page.locator('[data-count="failed"]').inner_text(),
    )
    assert ("8", "8") == final
    if seen[-1] != final:
        seen.append(final)
    # Counts moved through values between none and all, on the same page.
    assert len(seen) >= 3, seen
    assert await page.evaluate("window.notReloaded === true")
    assert await page.locator("[data-finished]").is_visible()
    assert 0 == await page.locator("[data-cancel]").count()


async def test_cancel_a_run_from_its_page(console: Console, browser: Browser) -> None:
    """The cancel button ends a running run; the page then shows it cancelled."""
    workflow_id, _ = console.workflow(tests=12, delay=1.0)
    run_id = console.run(workflow_id)
    page = await signed_in(browser, console)
    await page.goto(console.base_url + f"/console/runs/{run_id}")
    await page.get_by_role("button", name="Cancel run").click()
    await page.wait_for_load_state()
    assert "cancelled" == await page.locator("[data-status]").inner_text()
    run = console.wait_for_end(run_id)
    assert "cancelled" == run["lifecycle"]["status"]
    assert run["counts"]["passed"] + run["counts"]["failed"] < 12


async def test_step_through_a_runs_history(console: Console, browser: Browser) -> None:
    """Choose an event, then step forwards and back with the keyboard: the state follows."""
    workflow_id, _ = console.workflow(tests=2, delay=0.01)
    run_id = console.run(workflow_id)
    console.wait_for_end(run_id)
    page = await signed_in(browser, console)
    await page.goto(console.base_url + f"/console/runs/{run_id}/history")
    rows = page.locator("table.events tbody tr")
    total = await rows.count()
    assert "run.created" == await rows.nth(0).locator("code").first.inner_text()
    await rows.nth(0).get_by_role("link", name="State after").click()
    state = page.locator("#state")
    assert "pending" in await state.locator(".badge").first.inner_text()
    assert "2" == await state.locator('[data-count="queued"]').inner_text()
    for version in range(2, total + 1):
        await page.get_by_role("link", name=f"Event {version} →").focus()
        await page.keyboard.press("Enter")
        await page.wait_for_url(re.compile(rf".*at={version}#state$"))
        assert f"After event {version} of {total}" in await state.locator("h2").inner_text()
    assert "completed" == await state.locator(".badge").first.inner_text()
    assert "1" == await state.locator('[data-count="passed"]').inner_text()
    assert "1" == await state.locator('[data-count="failed"]').inner_text()
    selected = page.locator("table.events tr.selected td").first
    assert str(total) == await selected.inner_text()
    await page.get_by_role("link", name=f"← Event {total - 1}").click()
    assert f"After event {total - 1} of {total}" in await state.locator("h2").inner_text()


async def test_another_organisations_run_is_a_404_page(console: Console, browser: Browser) -> None:
    """B's run, opened by A's session: a 404 page that says nothing of it."""
    workflow_id, _ = console.workflow(tests=1, delay=0.01, key=OTHER_API_KEY)
    run_id = console.run(workflow_id, key=OTHER_API_KEY)
    page = await signed_in(browser, console)
    response = await page.goto(console.base_url + f"/console/runs/{run_id}")
    assert response is not None
    assert 404 == response.status
    assert "Not found" == await page.locator("h1").inner_text()
    await console.screenshots(page, "not-found")


async def test_a_form_posted_from_another_origin_is_refused(
    console: Console, browser: Browser
) -> None:
    """A page on another origin posts the cancel form (even with a real token): 403."""
    workflow_id, _ = console.workflow(tests=40, delay=1.0)
    run_id = console.run(workflow_id)
    page = await signed_in(browser, console)
    await page.goto(console.base_url + f"/console/runs/{run_id}")
    token = await page.locator('form.sign-out input[name="csrf_token"]').input_value()
    target = f"{console.base_url}/console/runs/{run_id}/cancel"

    async def evil(request: web.Request) -> web.Response:
        return web.Response(
            text=f"""<!doctype html><form id=f method=post action="{target}">
            <input name=csrf_token value="{token}"></form>
            <script>document.getElementById('f').submit()</script>""",
            content_type="text/html",
        )

    app = web.Application()
    app.router.add_get("/", evil)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with page.expect_response(target) as answer:
            await page.goto(f"http://127.0.0.1:{port}/")
        refused = await answer.value
        assert 403 == refused.status
        await page.wait_for_load_state()
        assert "Refused" == await page.locator("h1").inner_text()
        await console.screenshots(page, "refused")
    finally:
        await runner.cleanup()
    status = _api(console.base_url, "GET", f"/v1/workflows/tests/runs/{run_id}")["lifecycle"]
    assert status["status"] in ("pending", "running")
    _api(console.base_url, "POST", f"/v1/workflows/tests/runs/{run_id}/cancel")
