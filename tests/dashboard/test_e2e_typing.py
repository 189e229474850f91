"""Live typing on the agent page (issue 23, item 7): partial text on hive.agent.<a>.typing shows in
the terminal as it arrives and is replaced by the final assistant_text.

Headless Chromium against the dashboard as a real uvicorn process; the FAKE harness
(tests/dashboard/fakes.py) publishes what the real one does (`wire.agent.Typing`).
"""

from __future__ import annotations

import time

import pytest
from playwright.async_api import Page, expect

from hivewire.wire import ops
from hivewire.wire.agent import Typing
from tests.dashboard.conftest import Dashboard, Stack
from tests.dashboard.fakes import FakeHarness

pytestmark = pytest.mark.e2e


async def typed(h: FakeHarness, block: str, offset: int, text: str) -> None:
    await h.emit(ops.TYPING, Typing(block=block, offset=offset, text=text, instance=h.instance, ts=time.time()),
                 agent=h.agent)


async def test_partial_text_streams_in_and_the_final_message_replaces_it(page: Page, dashboard: Dashboard,
                                                                        stack: Stack) -> None:
    alice = stack.harnesses["alice"]
    await page.goto(dashboard.url + "/agents/alice")
    await page.fill("#token", dashboard.token)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(dashboard.url + "/agents/alice")
    log = page.locator("#log")
    await expect(log.locator(".ln.tool")).to_have_count(1)  # the history is in: the page is live

    await stack.run(alice.event("turn_start", {"wake_from": "operator", "unread": 0}))
    await stack.run(typed(alice, "msg_1:0", 0, "The build "))
    live = log.locator(".ln.typing")
    await expect(live).to_have_text("The build ")
    await stack.run(typed(alice, "msg_1:0", 10, "is green"))
    await expect(live).to_have_text("The build is green")
    await expect(log.locator(".ln.text")).to_have_count(1)  # only the typing line so far

    await stack.run(alice.event("assistant_text", {"text": "The build is green: 12 tests passed."}))
    await expect(live).to_have_count(0)
    await expect(log.locator(".ln.text")).to_have_text(["The build is green: 12 tests passed."])
    # a late delta of a block whose final text is in changes nothing
    await stack.run(typed(alice, "msg_1:0", 18, " (late)"))
    await stack.run(alice.event("note", {"text": "after the late delta"}))
    await expect(log.locator(".ln.note").filter(has_text="after the late delta")).to_have_count(1)
    await expect(live).to_have_count(0)

    # a second block, cut short by the end of the turn (e.g. cancelled): the line goes at turn_end
    await stack.run(typed(alice, "msg_2:0", 0, "Next I will"))
    await expect(live).to_have_text("Next I will")
    await stack.run(alice.event("turn_end", {"result_kind": "cancelled", "duration_ms": 10}))
    await expect(live).to_have_count(0)
    await expect(log.locator(".ln.text")).to_have_count(1)

    # joining mid-block: what went by is marked, not invented
    await stack.run(typed(alice, "msg_3:0", 40, "tail of a long answer"))
    await expect(live).to_have_text("… tail of a long answer")
    # its harness died mid-block: the next turn (of the new instance) takes the unfinished line away
    await stack.run(alice.event("turn_start", {"wake_from": "operator", "unread": 0}))
    await expect(live).to_have_count(0)
