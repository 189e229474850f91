"""An agent parked on a usage limit, in headless Chromium (issue 23 item 3).

The FAKE harness (tests/dashboard/fakes.py) reports `rate_limited_until` = now + 90 s and a plan
with one rejected window and one near its limit (allowed_warning); the dashboard runs as a real
uvicorn process on the real nats-server. The home page's agent row and the agent page show the
countdown (ticking down), each window's utilization and reset time, and the warning; nothing
scrolls sideways and the console stays clean.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Locator, Page, expect

from tests.dashboard.conftest import Dashboard, Stack, log_in

pytestmark = pytest.mark.e2e
ERRORS: dict[int, list[str]] = {}


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    # UTC, so the page's reset times can be compared with time.gmtime
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="UTC")
    p = await ctx.new_page()
    errors = ERRORS.setdefault(id(p), [])
    p.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    p.on("pageerror", lambda e: errors.append(f"page: {e}"))
    yield p
    ERRORS.pop(id(p), None)
    await ctx.close()


def no_errors(page: Page) -> None:
    """Checked at the end of the test, while the dashboard still runs (its stop cuts the SSE stream)."""
    assert ERRORS[id(page)] == [], ERRORS[id(page)]


async def no_sideways_scroll(page: Page) -> None:
    width = await page.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"page is {width[0]}px wide in a {width[1]}px window"


def plan(now: float) -> dict[str, dict[str, Any]]:
    return {"five_hour": {"utilization": 1.0, "resets_at": now + 90, "status": "rejected"},
            "seven_day": {"utilization": 0.85, "resets_at": now + 4 * 86400, "status": "allowed_warning"}}


def hhmm(ts: float) -> str:
    return time.strftime("%H:%M", time.gmtime(ts))


async def seconds_left(countdown: Locator) -> int:
    """'resumes in 1m 29s' -> 89."""
    text = await countdown.inner_text()
    m = re.fullmatch(r"resumes in (?:(\d+)m )?(\d+)s", text.strip())
    assert m, text
    return int(m[1] or 0) * 60 + int(m[2])


async def ticks_down(countdown: Locator) -> None:
    first = await seconds_left(countdown)
    assert 60 < first <= 90, first
    await countdown.page.wait_for_timeout(2200)
    later = await seconds_left(countdown)
    assert first - 4 <= later < first, (first, later)  # it ticks by itself, once a second


async def test_a_rate_limited_agent_shows_its_countdown_and_plan(page: Page, dashboard: Dashboard, stack: Stack,
                                                                 artifacts_dir: Path) -> None:
    alice = stack.harnesses["alice"]
    await log_in(page, dashboard, "/")
    row = page.locator("#agent-alice")
    await expect(row.locator(".presence")).to_have_text("idle")
    await expect(row.locator(".countdown")).to_have_count(0)
    await expect(page.locator("#live")).to_have_text("● live")  # the stream is open: what follows comes live

    # parked while the page is open: it learns it live (the heartbeat's `until`, then the agent's state)
    now = time.time()
    await stack.run(alice.rate_limit(now + 90, plan(now)))
    await expect(row.locator(".presence")).to_have_text("rate limited", timeout=5000)
    countdown = row.locator(".countdown")
    await expect(countdown).to_have_text(re.compile(r"^resumes in 1m \d\ds$"))
    hit = row.locator(".plan-window.limit-hit")
    await expect(hit).to_have_text(f"limit reached: five_hour 100% · resets {hhmm(now + 90)}")
    warning = row.locator(".plan-window.limit-warning")
    await expect(warning).to_be_visible()
    week = hhmm(now + 4 * 86400)
    await expect(warning).to_have_text(re.compile(r"^near limit: seven_day 85% · resets \w{3} " + week + "$"))
    await ticks_down(countdown)
    await no_sideways_scroll(page)

    # a fresh load has it from /api/overview
    await page.reload()
    await expect(page.locator("#agent-alice .countdown")).to_have_text(re.compile(r"^resumes in 1m \d\ds$"))
    await expect(page.locator("#agent-alice .limit-warning")).to_be_visible()
    await no_sideways_scroll(page)
    await page.screenshot(path=str(artifacts_dir / "dashboard-rate-limited-home.png"), full_page=True)

    # the agent page: the countdown beside the badge, and every window of the plan
    await page.click("#agent-alice a.agent-link")
    await expect(page).to_have_url(dashboard.url + "/agents/alice")
    await expect(page.locator("#b-presence")).to_have_text("rate limited")
    limit = page.locator("#b-limit")
    await expect(limit).to_have_text(re.compile(r"^resumes in 1m \d\ds$"))
    await ticks_down(limit)
    windows = page.locator("#limits .plan-window")
    await expect(windows).to_have_text([f"limit reached: five_hour 100% · resets {hhmm(now + 90)}",
                                        re.compile(r"^near limit: seven_day 85% · resets ")])
    await expect(page.locator("#limits .limit-warning")).to_be_visible()
    await no_sideways_scroll(page)
    await expect(page.locator("#live")).to_have_text("● live")
    await page.screenshot(path=str(artifacts_dir / "dashboard-rate-limited-agent.png"), full_page=True)

    # the park ends: the countdown goes, live; the windows stay (now all allowed), with no warning
    alice.status, alice.rate_limited_until = "online", None
    alice.plan = {"five_hour": {"utilization": 0.01, "resets_at": now + 18000, "status": "allowed"}}
    await stack.run(alice.set_presence("idle"))
    await expect(page.locator("#b-presence")).to_have_text("idle", timeout=5000)
    await expect(limit).to_be_hidden()
    await expect(windows).to_have_text([f"five_hour 1% · resets {hhmm(now + 18000)}"])
    await expect(page.locator("#limits .limit-warning")).to_have_count(0)
    # the home page shows only the windows that hold an agent back or are near their limit: none now
    await page.goto(dashboard.url + "/")
    await expect(page.locator("#agent-alice .presence")).to_have_text("idle")
    await expect(page.locator("#agent-alice .countdown")).to_have_count(0)
    await expect(page.locator("#agent-alice .plan-window")).to_have_count(0)
    await expect(page.locator("#live")).to_have_text("● live")

    # near a limit but not parked: the warning alone, live after the agent's next turn
    alice.plan = {"five_hour": {"utilization": 0.9, "resets_at": now + 18000, "status": "allowed_warning"}}
    await stack.run(alice.play_turn("one more"))
    await expect(page.locator("#agent-alice .limit-warning")).to_have_text(
        f"near limit: five_hour 90% · resets {hhmm(now + 18000)}", timeout=5000)
    await expect(page.locator("#agent-alice .countdown")).to_have_count(0)
    no_errors(page)
