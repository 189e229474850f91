"""The operator's first hour in real Chromium: what a newcomer trips over first.

The stack is the one of test_e2e.py (real nats-server, the dashboard as a real
uvicorn process, FAKE services); here the data holds long values (an OAuth URL,
a message of one long word), many messages, two snapshots and JSON tool results.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Dialog, Page, expect

from hivewire.names import NAME_RULE
from hivewire.wire.backup import Snapshot
from tests.dashboard.conftest import Dashboard, Stack, send_as
from tests.dashboard.test_e2e import log_in, until

pytestmark = pytest.mark.e2e
LONG_URL = "https://claude.example/oauth/authorize?code=true&client_id=" + "a1b2c3d4" * 40 + "&state=xyz"




ERRORS: dict[int, list[str]] = {}


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A page recording console errors (an invalid `pattern`, a 404 favicon) and page errors: see `no_errors`."""
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    p = await ctx.new_page()
    errors = ERRORS.setdefault(id(p), [])
    p.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    p.on("pageerror", lambda e: errors.append(f"page: {e}"))
    yield p
    ERRORS.pop(id(p), None)
    await ctx.close()


def no_errors(page: Page) -> None:
    """Checked at the end of each test, while the dashboard still runs (its stop cuts the SSE stream)."""
    assert ERRORS[id(page)] == [], ERRORS[id(page)]


async def seed_data(stack: Stack) -> None:
    """Long values and a busy flow (sent through the real broker), before the page loads."""
    now = time.time()
    for i in range(40):
        await send_as(stack, "alice", "manager", f"flow message {i}")
    await send_as(stack, "alice", "operator", "log in at " + LONG_URL)
    stack.backup.snapshots.insert(0, Snapshot(snapshot_id="20990101T000000Z", created_at=now, classes=["databases"],
                                              verified=True))
    alice = stack.harnesses["alice"]
    alice.status, alice.login_url = "needs_login", LONG_URL
    alice.add_event("tool_result", {"content": json.dumps(json.dumps({"id": "7", "recipients": ["bob"]}))})
    alice.add_event("tool_result", {"content": [{"type": "text", "text": '{"ok": true, "path": "/state/a.md"}'}]})


async def no_sideways_scroll(page: Page) -> None:
    width = await page.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"page is {width[0]}px wide in a {width[1]}px window"


async def test_home_page_first_hour(page: Page, dashboard: Dashboard, stack: Stack) -> None:
    await seed_data(stack)
    await log_in(page, dashboard)
    flow = page.locator("#messages")
    await expect(flow.locator(".msg").first).to_contain_text("log in at https://claude.example")  # newest first
    await expect(flow.locator(".msg").nth(1)).to_contain_text("flow message 39")
    scroll = await flow.evaluate("el => [el.scrollTop, el.scrollHeight, el.clientHeight]")
    assert scroll[1] > scroll[2] and scroll[0] == 0, scroll  # it overflows, and opens at the top
    await expect(page.locator("#inbox .msg").first).to_contain_text("log in at")

    # the newest snapshot is called the newest
    await expect(page.locator("#backups")).to_contain_text("newest 20990101T000000Z")
    # the needs-login badge is words, no glyph a default Debian font lacks
    await expect(page.locator("#agent-alice .presence")).to_have_text("needs login")
    await no_sideways_scroll(page)

    # the spawn field's pattern compiles in Chromium (v flag) and flags a bad name
    name = page.locator("#spawn-form input[name=name]")
    await name.fill("Bad_Name")
    assert await name.evaluate("i => i.validity.patternMismatch")
    await name.fill("good-name-2")
    assert await name.evaluate("i => i.validity.valid")

    # the send box names the manager; everyone needs a confirmation
    compose_to = page.locator("#compose-to")
    await expect(compose_to).to_have_value("manager")
    await page.select_option("#compose-to", "*")
    await page.fill("#compose-body", "all hands")
    dialogs: list[str] = []

    async def dismiss(d: Dialog) -> None:
        dialogs.append(d.message)
        await d.dismiss()

    page.once("dialog", dismiss)
    await page.click("#compose button")
    await until(lambda: len(dialogs) == 1)
    assert "every agent" in dialogs[0]
    assert not [to for to, body in stack.store.sent() if body == "all hands"]

    async def accept(d: Dialog) -> None:
        await d.accept()

    page.once("dialog", accept)
    await page.click("#compose button")
    # the broker stores a broadcast once per known agent
    await until(lambda: sorted(to for to, body in stack.store.sent() if body == "all hands") == ["alice", "manager"])

    # the favicon is there (a 404 would be a console error too)
    icon = await page.request.get(dashboard.url + "/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    no_errors(page)


async def test_agent_and_login_pages_wrap_long_values(page: Page, dashboard: Dashboard, stack: Stack) -> None:
    await seed_data(stack)
    await page.goto(dashboard.url + "/login")
    await no_sideways_scroll(page)
    await log_in(page, dashboard, "/agents/alice")
    await expect(page.locator("#login-panel")).to_be_visible()
    await expect(page.locator("#login-url")).to_have_text(LONG_URL)
    await expect(page.locator("#b-presence")).to_have_text("needs login")
    results = page.locator("#log .ln.result")
    await expect(results).to_have_count(3)
    # a JSON result is pretty-printed JSON, not an escaped string
    await expect(results.nth(1)).to_contain_text('"recipients": [')
    text: Any = await results.nth(1).text_content()
    assert "\\" not in text
    await expect(results.nth(2)).to_contain_text('"path": "/state/a.md"')
    await no_sideways_scroll(page)
    no_errors(page)


async def test_spawn_error_states_the_naming_rule(page: Page, dashboard: Dashboard, stack: Stack) -> None:
    await log_in(page, dashboard)
    csrf = await page.evaluate("() => document.querySelector('meta[name=csrf-token]').content")
    for bad, words in (("Bad_Name", NAME_RULE), ("operator", "reserved")):
        r = await page.request.post(dashboard.url + "/api/agents", data={"name": bad},
                                    headers={"X-CSRF-Token": csrf, "Origin": dashboard.url})
        assert r.status == 400
        err = (await r.json())["error"]
        assert err["code"] == "bad_name" and words in err["message"], err
    no_errors(page)
