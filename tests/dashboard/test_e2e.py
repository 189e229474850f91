"""End to end in real headless Chromium (Playwright) against a running stack.

The stack: the real nats-server, the dashboard as a real uvicorn process, the
real broker in-process (seeded, read back through `stack.store`), and FAKE
deployer/backup/harness services (tests/dashboard/fakes.py) that record what the
dashboard asked them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.dashboard.conftest import Dashboard, Stack

pytestmark = pytest.mark.e2e


async def until(pred: Callable[[], Any], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met")


async def log_in(page: Page, dash: Dashboard, path: str = "/") -> None:
    await page.goto(dash.url + path)
    await expect(page).to_have_url(f"{dash.url}/login?next={path.replace('/', '%2F')}")
    await page.fill("#token", dash.token)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(dash.url + path)


async def test_home_login_presence_approve_answer(page: Page, dashboard: Dashboard, stack: Stack,
                                                  artifacts_dir: Path) -> None:
    # Unauthenticated: the page is the login form, the API says 401.
    await page.goto(dashboard.url + "/")
    assert "/login" in page.url
    await expect(page.locator("#agents")).to_have_count(0)
    assert (await page.request.get(dashboard.url + "/api/overview")).status == 401
    await page.fill("#token", "wrong")
    await page.click("button[type=submit]")
    await expect(page.locator("#login-error")).to_contain_text("not the operator token")

    await log_in(page, dashboard)
    row = page.locator("#agent-alice")
    await expect(row.locator(".presence")).to_have_text("idle")
    await expect(row).to_contain_text("model · haiku")
    await expect(row).to_contain_text("ctx · 42k (21%)")
    await expect(row).to_contain_text("2 unread")

    # Presence follows the harness within 2 s (no polling: SSE).
    alice = stack.harnesses["alice"]
    await stack.run(alice.set_presence("thinking"))
    await expect(row.locator(".presence")).to_have_text("thinking", timeout=2000)
    await stack.run(alice.set_presence("waiting", "rate limit"))
    await expect(row.locator(".presence")).to_have_text("waiting(rate limit)", timeout=2000)
    await stack.run(alice.set_presence("idle"))
    await expect(row.locator(".presence")).to_have_text("idle", timeout=2000)

    # Tombstones, inbox, flow, backups, storage are all on the page.
    await expect(page.locator("#tombstones")).to_contain_text("bob")
    await expect(page.locator("#inbox")).to_contain_text("hello operator")
    await expect(page.locator("#messages")).to_contain_text("status: tests green")
    await expect(page.locator("#backups")).to_contain_text("1 snapshot(s)")
    await expect(page.locator("#storage")).to_contain_text("total")
    ap_id, q_id = stack.ids["approval"], stack.ids["question"]
    diff = page.locator(f".approval[data-id='{ap_id}'] .diff")
    await expect(diff).to_contain_text("switch to sonnet, add git")
    await expect(diff.locator(".add")).to_contain_text('model = "sonnet"')
    await page.screenshot(path=str(artifacts_dir / "dashboard-home.png"), full_page=True)

    # Approve with a note: the broker records it and the queue empties.
    ap = page.locator(f".approval[data-id='{ap_id}']")
    await ap.locator("input.note").fill("ship it")
    await ap.locator("button.approve").click()
    await until(lambda: len(stack.store.resolved()) == 1)
    assert stack.store.resolved() == [(ap_id, "approve", "ship it")]
    await expect(page.locator("#approvals")).to_contain_text("nothing waiting for approval")

    # Answer a multi-choice question with two options.
    q = page.locator(f"form.question[data-id='{q_id}']")
    await q.get_by_label("unit").check()
    await q.get_by_label("e2e").check()
    await q.locator("button").click()
    await until(lambda: len(stack.store.answers()) == 1)
    assert stack.store.answers() == [(q_id, ["unit", "e2e"])]
    await expect(page.locator("#questions")).to_contain_text("no open questions")

    # Compose a message as the operator.
    await page.select_option("#compose-to", "alice")
    await page.fill("#compose-body", "please rebase")
    await page.click("#compose button")
    await until(lambda: ("alice", "please rebase") in stack.store.sent())
    await expect(page.locator("#messages")).to_contain_text("please rebase")

    # A dead harness (no heartbeat) shows as offline-dead, never idle.
    await stack.run(_stop_beat(alice))
    await expect(row.locator(".presence")).to_have_text("offline-dead", timeout=8000)


async def _stop_beat(h: Any) -> None:
    h.stop_heartbeat()


async def test_agent_page_history_prompt_and_stream(page: Page, dashboard: Dashboard, stack: Stack,
                                                    artifacts_dir: Path) -> None:
    await log_in(page, dashboard, "/agents/alice")
    log = page.locator("#log")
    await expect(log.locator(".ln.tool").first).to_contain_text("Read /state/notes.md")  # history first
    await expect(page.locator("#b-presence")).to_have_text("idle")
    await expect(page.locator("#b-ctx")).to_have_text("ctx · 42k (21%)")

    await page.fill("#prompt", "hello there")
    await page.keyboard.press("Enter")
    await expect(log.locator(".ln.text")).to_contain_text("Done: hello there", timeout=5000)
    assert stack.harnesses["alice"].prompts == ["hello there"]
    await expect(log.locator(".ln.tool").last).to_contain_text("$ ls -la /work")
    await expect(log.locator(".ln.result details")).to_have_count(1)  # the long result is folded
    await expect(log.locator(".ln.turn").last).to_contain_text("end · ok")
    await expect(page.locator("#b-ctx")).to_have_text("ctx · 70k (35%)")  # badge from token_usage_changed
    await expect(page.locator("#chart svg circle")).to_have_count(1)  # stats from hive.agent.alice.turns
    await expect(page.locator("#stats-summary")).to_contain_text("turns")

    await page.fill("#prompt", "fail please")  # a failed turn says why, from the turn's note
    await page.keyboard.press("Enter")
    await expect(log.locator(".ln.turn").last).to_contain_text("end · failed")
    await expect(log.locator(".ln.error").last).to_contain_text("API Error: 500 simulated upstream failure")

    await page.fill("#prompt", "/model sonnet")
    await page.keyboard.press("Enter")
    await expect(page.locator("#b-model")).to_have_text("model · sonnet")
    await page.fill("#prompt", "/help")
    await page.keyboard.press("Enter")
    await expect(log.locator(".ln.help")).to_contain_text("/new-session")
    await page.fill("#prompt", "/compact")
    await page.keyboard.press("Enter")
    await page.click("#btn-cancel")
    await until(lambda: stack.harnesses["alice"].controls == ["compact", "cancel"])
    await page.screenshot(path=str(artifacts_dir / "dashboard-agent.png"), full_page=True)


class _Evil(BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:
        body = f"""<!doctype html><html><body>
<form id="f" method="post" action="{self.target}/api/messages" enctype="text/plain">
<input name='{{"to":"alice","body":"pwned","x":"' value='"}}'></form>
<script>
fetch("{self.target}/api/agents/alice/prompt", {{method: "POST", credentials: "include", mode: "no-cors",
  headers: {{"Content-Type": "text/plain"}}, body: JSON.stringify({{text: "pwned"}})}})
  .finally(() => document.getElementById("f").submit());
</script></body></html>""".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def evil_site(dashboard: Dashboard) -> Iterator[str]:
    handler = type("Evil", (_Evil,), {"target": dashboard.url})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


async def test_cross_site_post_is_refused(page: Page, dashboard: Dashboard, stack: Stack, evil_site: str) -> None:
    await log_in(page, dashboard)
    async with page.expect_response(lambda r: r.url.endswith("/api/messages")) as resp:
        await page.goto(evil_site)
    response = await resp.value
    assert response.status in (401, 403)  # the dashboard is done with the request: it sent nothing before
    assert stack.store.sent() == []
    assert stack.harnesses["alice"].prompts == []
