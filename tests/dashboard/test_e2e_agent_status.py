"""The agent page's badge follows the agent's current state, not old events (issue 23, item 5).

Headless Chromium against the dashboard as a real uvicorn process and FAKE
services (tests/dashboard/fakes.py) on the real nats-server.
"""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import Page, expect

from tests.dashboard.conftest import Dashboard, Stack, log_in

pytestmark = pytest.mark.e2e


async def needs_login(h: object) -> None:
    h.status = "needs_login"  # type: ignore[attr-defined]
    await h.event("status_changed", {"status": "needs_login", "reason": "needs_login"})  # type: ignore[attr-defined]
    await h.set_presence("waiting", "needs_login")  # type: ignore[attr-defined]


async def restarted_online(h: object) -> None:
    """A restarted harness that found credentials: a new instance, online, idle. It emits no
    status_changed (as before harnesses announced themselves): the dashboard must not need one."""
    h.instance = uuid.uuid4().hex[:12]  # type: ignore[attr-defined]
    h.status = "online"  # type: ignore[attr-defined]
    await h.set_presence("idle")  # type: ignore[attr-defined]


async def test_stale_needs_login_clears_once_the_agent_is_online(page: Page, dashboard: Dashboard,
                                                                 stack: Stack) -> None:
    alice = stack.harnesses["alice"]
    await log_in(page, dashboard, "/agents/alice")
    badge, prompt = page.locator("#b-presence"), page.locator("#prompt")
    await expect(badge).to_have_text("idle")
    await expect(page.locator("#live")).to_have_text("● live")  # the stream is open: what follows comes live

    await stack.run(needs_login(alice))
    await expect(badge).to_have_text("needs login", timeout=5000)
    await expect(prompt).to_be_disabled()
    await expect(page.locator("#login-panel")).to_be_visible()

    # credentials appear and the harness comes back as a new instance; a turn succeeds
    await stack.run(restarted_online(alice))
    await stack.run(alice.play_turn("all good?"))
    await expect(page.locator("#log .ln.text").filter(has_text="Done: all good?")).to_have_count(1)
    await expect(badge).to_have_text("idle", timeout=5000)
    await expect(prompt).to_be_enabled()
    await expect(page.locator("#login-panel")).to_be_hidden()

    # a fresh load replays the old needs_login events in the history: the badge stays on the current state
    await page.reload()
    await expect(page.locator("#log .ln.text").filter(has_text="Done: all good?")).to_have_count(1)
    await expect(badge).to_have_text("idle")
    await expect(prompt).to_be_enabled()
    # so does the home page
    await page.goto(dashboard.url + "/")
    await expect(page.locator("#agent-alice .presence")).to_have_text("idle")

    # cancelling a login flow is a step, not a status: an online agent stays online
    await page.goto(dashboard.url + "/agents/alice")
    await expect(badge).to_have_text("idle")
    await expect(page.locator("#live")).to_have_text("● live")  # the stream is open: what follows comes live
    await stack.run(alice.event("status_changed", {"status": "needs_login_cancelled"}))
    await expect(page.locator("#log .ln.note").filter(has_text="needs_login_cancelled")).to_have_count(1)
    await expect(badge).to_have_text("idle")
    await expect(prompt).to_be_enabled()


async def test_presence_alone_brings_a_needs_login_badge_back_to_idle(page: Page, dashboard: Dashboard,
                                                                      stack: Stack) -> None:
    """A harness that never says `status_changed online` (an older one): its heartbeat is the truth."""
    alice = stack.harnesses["alice"]
    await stack.run(needs_login(alice))
    await log_in(page, dashboard, "/agents/alice")
    badge = page.locator("#b-presence")
    await expect(badge).to_have_text("needs login")
    await expect(page.locator("#live")).to_have_text("● live")  # the stream is open: what follows comes live
    alice.status = "online"
    await stack.run(alice.set_presence("idle"))
    await expect(badge).to_have_text("idle", timeout=5000)
    await expect(page.locator("#prompt")).to_be_enabled()
