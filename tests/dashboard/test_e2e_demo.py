"""The operator's first hour, for real: `hive demo` in a fresh HIVE_HOME, watched in real Chromium.

`hive demo` runs as a subprocess in its own process group (stopped by this
test): embedded NATS, every service, agents running the real claude CLI in the
sandbox against the bundled simulator. The browser logs in with the printed
token, approves the manager's request for a helper, watches the helper's file
and report arrive, and answers the manager's question. Every page is
screenshotted into test-artifacts/demo-*.png and checked for sideways
scrolling, the demo banner and console errors.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from hive_harness import demoscript
from hivewire.procs import die_with_parent, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CLAUDE = Path(__file__).resolve().parents[2] / ".tools/node_modules/.bin/claude"
SCENARIO_S = 90_000  # ms: each step of the scenario (a CLI turn in the sandbox) on a busy 2-core host


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    """`hive demo --home <fresh>`; yields (process, its output file, the home). Stopped with SIGTERM
    (its process group SIGKILLed if it does not stop within 30 s)."""
    if not CLAUDE.exists():
        pytest.skip("the claude CLI is not installed (scripts/install)")
    home, out = tmp_path / "demo-home", tmp_path / "demo.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HIVE_", "ANTHROPIC_", "CLAUDE_CODE_OAUTH"))}
    env.update(HIVE_DASHBOARD_ADDR=f"127.0.0.1:{free_port()}", HIVE_AGENT_CMD=str(CLAUDE), COLUMNS="200")
    with open(out, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "hivewire.cli", "demo", "--home", str(home)], env=env,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=die_with_parent)
    try:
        yield proc, out, home
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_printed(proc: subprocess.Popen[bytes], out: Path, needle: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = out.read_text()
        if needle in text:
            return text
        assert proc.poll() is None, f"hive demo exited:\n{text}"
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} never printed:\n{out.read_text()}")


def ready(proc: subprocess.Popen[bytes], out: Path) -> tuple[str, str]:
    """The ready block: labelled a demo, the dashboard's URL, the token's file, the simulator."""
    text = wait_printed(proc, out, "stop:")
    assert text.startswith("DEMO: agents talk to a scripted simulator"), text
    url = re.search(r"dashboard:\s+(http://\S+/)\n", text)
    token_file = re.search(r"token:\s+(\S+)", text)
    assert url and token_file, text
    assert re.search(r"simulator:\s+http://127\.0\.0\.1:\d+ ", text), text
    return url.group(1).rstrip("/"), Path(token_file.group(1)).read_text().strip()




async def check_page(page: Page, shots: Path, name: str, errors: list[str]) -> None:
    """The banner says it is a demo, nothing scrolls sideways, no console error; a screenshot."""
    await expect(page.locator("#demo-banner")).to_contain_text("scripted simulator, not a model")
    await page.screenshot(path=str(shots / f"demo-{name}.png"), full_page=True)
    width = await page.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{name}: the page is {width[0]}px wide in a {width[1]}px window"
    assert errors == [], (name, errors)


async def test_the_demo_scenario_in_the_browser(demo: tuple[subprocess.Popen[bytes], Path, Path],
                                                browser: Browser, artifacts_dir: Path) -> None:
    proc, out, home = demo
    base, token = ready(proc, out)

    ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page: {e}"))
    try:
        await page.goto(base + "/")
        await expect(page.locator("#token")).to_be_visible()
        await check_page(page, artifacts_dir, "1-login", errors)
        await page.fill("#token", token)
        await page.click("button[type=submit]")
        await expect(page).to_have_url(base + "/")
        await expect(page.locator("#agent-manager")).to_be_visible(timeout=SCENARIO_S)

        # 1. the manager asks for a helper: the operator approves it here
        approval = page.locator("#approvals .approval", has_text="helper")
        await expect(approval).to_contain_text("spawn for helper", timeout=SCENARIO_S)
        await check_page(page, artifacts_dir, "2-approval", errors)
        await approval.locator("button.approve").click()

        # 2. the helper is spawned, does its task and reports back; 3. the manager asks the operator
        await expect(page.locator("#agent-helper")).to_be_visible(timeout=SCENARIO_S)
        question = page.locator("#questions form.question", has_text=demoscript.QUESTION)
        await expect(question).to_be_visible(timeout=SCENARIO_S)
        await expect(page.locator("#messages")).to_contain_text(f"{demoscript.HELLO} is written")
        await check_page(page, artifacts_dir, "3-question", errors)
        await question.locator("label.opt", has_text="keep it").click()
        await question.locator("button.primary").click()

        # 4. the answer wakes the manager, which thanks the operator: the scenario is complete
        await expect(page.locator("#inbox")).to_contain_text("Thank you for answering", timeout=SCENARIO_S)
        await expect(page.locator("#questions")).to_contain_text("no open questions")
        await check_page(page, artifacts_dir, "4-done", errors)
        hello = home / "agents/helper/state" / demoscript.HELLO
        assert hello.read_text() == "hello from the demo helper\n"

        # the agents' own pages show what each did
        await page.goto(base + "/agents/helper")
        await expect(page.locator("#log")).to_contain_text("Bash", timeout=15_000)
        await expect(page.locator("#log")).to_contain_text(f"wrote 27 bytes in {hello.parent}")
        await check_page(page, artifacts_dir, "5-helper", errors)
        await page.goto(base + "/agents/manager")
        await expect(page.locator("#log")).to_contain_text("request_spawn", timeout=15_000)
        await check_page(page, artifacts_dir, "6-manager", errors)
    finally:
        await ctx.close()

    # the console narrated the scenario, every line labelled as the simulator's
    narrated = out.read_text()
    for say in ("simulator: manager asks to spawn `helper`", "simulator: helper writes hello.txt",
                "simulator: manager got your answer: the scenario is complete"):
        assert say in narrated, narrated
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert out.read_text().rstrip().endswith("stopped")
