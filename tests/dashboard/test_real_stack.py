"""The dashboard against the REAL stack, no fakes: real nats-server, `python -m hive_broker`,
`python -m hive_deployer` (process runtime) spawning a real harness around the real claude CLI,
which talks to the Messages-API simulator (`hive_harness.simmodel`: scripted replies, not a model),
and the dashboard as a real uvicorn process, driven in headless Chromium.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, expect

from hive_harness.simmodel import Script, SimModel, Step
from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient
from hivewire.wire import broker as wb
from hivewire.wire import ops
from hivewire.wire.common import Empty
from hivewire.wire.deployer import SpawnRequest
from tests.dashboard.conftest import TOKEN, free_port
from tests.support.procs import ServiceProcess, wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CLAUDE = ROOT / ".tools/node_modules/.bin/claude"
ANSWER = "Simulated answer: the build is green."


@dataclass
class RealStack:
    url: str
    sim: SimModel
    client: HiveClient
    procs: dict[str, ServiceProcess]

    def logs(self) -> str:
        return "\n".join(f"===== {n} =====\n{p.log()[-4000:]}" for n, p in self.procs.items())


@pytest.fixture
async def real(hive_home: Path, nats_url: str, tmp_path: Path) -> AsyncIterator[RealStack]:
    if not CLAUDE.exists():
        pytest.skip("the claude CLI is not installed in .tools (scripts/install)")
    sim = SimModel(Script([Step(kind="text", text=ANSWER, match="status of the build")])).start()
    userhome = tmp_path / "userhome"
    userhome.mkdir()
    addr = f"127.0.0.1:{free_port()}"
    env = {
        "HIVE_HOME": str(hive_home), "HIVE_NATS_URL": nats_url, "HIVE_METRICS_ADDR": "127.0.0.1:0",
        # what the deployer hands down to the harness it spawns (process runtime: its own env + the launch's)
        "HIVE_DEPLOYER_RUNTIME": "process", "HIVE_ALLOW_UNCONFINED": "1", "HIVE_DEPLOYER_ENSURE_MANAGER": "0",
        "HIVE_AGENT_CMD": str(CLAUDE), "ANTHROPIC_BASE_URL": sim.url, "ANTHROPIC_API_KEY": "sk-simulator",
        "HOME": str(userhome), "HIVE_HEARTBEAT_S": "0.5", "HIVE_WAKE_POLL_S": "1", "HIVE_ALLOWED_TOOLS": "",
        "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        # the dashboard
        "HIVE_OPERATOR_TOKEN": TOKEN, "HIVE_DASHBOARD_ADDR": addr,
    }
    saved = os.environ.pop("CLAUDE_CONFIG_DIR", None)
    procs: dict[str, ServiceProcess] = {}
    t = await NatsTransport.connect(nats_url, name="real-stack-test", forever=False)
    stack = RealStack(f"http://{addr}", sim, HiveClient(t), procs)
    try:
        for short in ("broker", "deployer"):
            procs[short] = ServiceProcess(short, env, tmp_path / "logs").start()
        client = stack.client

        async def started() -> bool:
            # not a request: the micro endpoints answer before on_start has migrated deployer.sqlite
            return "service_started" in procs["deployer"].log()

        await wait_for(started, timeout=30)
        await client.request(ops.DEPLOYER_LIST, Empty(), timeout=5)
        await client.request(ops.DEPLOYER_SPAWN, SpawnRequest(name="alice"), timeout=30)
        st = await wait_for(lambda: client.request(ops.CTL_STATE, Empty(), timeout=1, agent="alice"),
                            timeout=40)
        assert st.status == "online", st
        procs["dashboard"] = ServiceProcess("dashboard", env, tmp_path / "logs").start()
        async with httpx.AsyncClient() as c:
            async def up() -> bool:
                r = await c.get(stack.url + "/healthz")
                return r.status_code == 200 and r.json()["nats"] == "connected"
            await wait_for(up, timeout=20)
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        for p in reversed(procs.values()):
            p.stop()
        await t.close()
        sim.stop()
        if saved is not None:
            os.environ["CLAUDE_CONFIG_DIR"] = saved
    for name, p in procs.items():
        assert "Traceback" not in p.log(), f"{name}:\n{p.log()[-4000:]}"




async def test_dashboard_drives_the_real_stack(real: RealStack, page: Page, artifacts_dir: Path) -> None:
    try:
        await _drive(real, page, artifacts_dir)
    except BaseException:
        await page.screenshot(path=str(artifacts_dir / "dashboard-real-failure.png"), full_page=True)
        print(real.logs())
        raise


async def _drive(real: RealStack, page: Page, artifacts_dir: Path) -> None:
    await page.goto(real.url + "/")
    assert "/login" in page.url
    await page.fill("#token", TOKEN)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(real.url + "/")

    # The agent the real deployer spawned, with live presence from its real harness.
    row = page.locator("#agent-alice")
    await expect(row.locator(".presence")).to_have_text("idle", timeout=10_000)
    await page.screenshot(path=str(artifacts_dir / "dashboard-real-home.png"), full_page=True)

    # A prompt from the per-agent page runs a real turn of the claude CLI against the simulator.
    await page.goto(real.url + "/agents/alice")
    log = page.locator("#log")
    await expect(page.locator("#b-presence")).to_have_text("idle", timeout=10_000)
    await expect(page.locator("#live")).to_have_text("● live")  # the turn's events will reach the page
    await expect(page.locator("#stats-summary")).to_contain_text("turns")  # the table below is loaded
    rows = page.locator("#turns tbody tr")
    turns_before = await rows.count()  # the harness's own first turn may already be there
    await page.fill("#prompt", "What is the status of the build?")
    await page.keyboard.press("Enter")
    await expect(log.locator(".ln.text").filter(has_text=ANSWER)).to_have_count(1, timeout=30_000)
    await expect(log.locator(".ln.turn").last).to_contain_text("end", timeout=15_000)
    assert any("status of the build" in str(r.body) for r in real.sim.script.main_requests())
    # The turn stats (hive.agent.alice.turns) and the badges (token_usage_changed) follow the real turn.
    await expect(rows).to_have_count(turns_before + 1, timeout=15_000)
    await expect(page.locator("#stats-summary")).to_contain_text("turns")
    await expect(page.locator("#b-ctx")).to_have_text(re.compile(r"ctx · \d+(\.\d)?k? \(\d+%\)"))
    await expect(page.locator("#b-cost")).to_have_text(re.compile(r"last turn · \d+(\.\d)?k? tokens"))
    await expect(page.locator("#b-presence")).to_have_text("idle", timeout=15_000)
    await page.screenshot(path=str(artifacts_dir / "dashboard-real-agent.png"), full_page=True)

    # The operator writes to the agent from the home compose box; the real broker stores it.
    await page.goto(real.url + "/")
    await page.select_option("#compose-to", "alice")
    await page.fill("#compose-body", "please rebase onto main")
    await page.click("#compose button")
    await expect(page.locator("#messages")).to_contain_text("please rebase onto main", timeout=10_000)

    async def stored() -> bool:
        rep = await real.client.request(ops.MESSAGES_LIST, wb.MessagesListRequest(agent="alice"), timeout=2)
        return any(m.to == "alice" and m.body == "please rebase onto main" and m.sender == "operator"
                   for m in rep.messages)

    await wait_for(stored, timeout=10)
    # hive-backup is not running here: the card says so once and claims no snapshot count it cannot know
    await expect(page.locator("#backups .error")).to_have_text(
        "backups: unavailable: no service answers on hive.backup.list")
    await expect(page.locator("#backups")).not_to_contain_text("snapshot(s)")
    await page.screenshot(path=str(artifacts_dir / "dashboard-real-home-after.png"), full_page=True)
