"""A stopped agent's page shows its last words (issue 23, item 6).

No harness answers for `zoe`; its events.sqlite and turn-stats.sqlite (written
by the harness's own Bus and stores) are on the host. The REAL hive-deployer
(in-process, on the real nats-server) reads them read-only for the dashboard
(a real uvicorn process), driven in headless Chromium.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from hive_deployer.lifecycle import Options
from hive_deployer.runtimes import ProcessRuntime
from hive_deployer.service import DeployerService
from hive_harness.bus import Bus
from hive_harness.store import EventStore, TurnStatsStore
from hivewire.nats_transport import NatsTransport
from hivewire.settings import Settings
from hivewire.wire.agent import TurnStats
from tests.dashboard.conftest import Dashboard

pytestmark = pytest.mark.e2e


@pytest.fixture
async def deployer(dash_settings: Settings, nats_transport: NatsTransport,
                   monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[DeployerService]:
    monkeypatch.setenv("HIVE_DEPLOYER_ENSURE_MANAGER", "0")
    svc = DeployerService(nats_transport, dash_settings, runtime=ProcessRuntime(allow_unconfined=True),
                          options=Options(stop_timeout=5.0), ensure_manager=False)
    await svc.start()
    yield svc
    await svc.stop()


async def last_words(state: Path) -> None:
    """What zoe's harness left behind: one turn through the harness's own event path, and its row."""
    store = EventStore(state / "events.sqlite")
    assert await store.open()

    async def nowhere(op: object, payload: object, **params: str) -> None:
        return None

    bus = Bus("zoe", state, store, nowhere, None)
    await bus.emit("turn_start", wake_from="operator", unread=0, prompt="how is the build?", model="haiku")
    await bus.emit("tool_use", name="Bash", input={"command": "make test"}, summary="Bash $ make test")
    await bus.emit("tool_result", tool_use_id="t1", is_error=False, text="12 passed", summary="12 passed")
    await bus.emit("assistant_text", text="The build is green: 12 tests passed.")
    await bus.emit("turn_end", result_kind="ok", duration_ms=2100, ctx=41_000, cost=45_000, note=None)
    await store.close()
    turns = TurnStatsStore(state / "turn-stats.sqlite")
    await turns.open()
    await turns.record(TurnStats(agent="zoe", model="haiku", wake_from="operator", result_kind="ok", started_at=1.0,
                                 ended_at=3.1, duration_ms=2100, input_tokens=4000, output_tokens=1000,
                                 last_input_tokens=41_000, context_window=200_000, tool_call_count=1))
    await turns.close()


async def test_a_stopped_agents_page_shows_its_history(page: Page, dashboard: Dashboard, deployer: DeployerService,
                                                       hive_home: Path) -> None:
    state = hive_home / "agents" / "zoe" / "state"
    state.mkdir(parents=True)
    await last_words(state)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in state.glob("*.sqlite")}

    await page.goto(dashboard.url + "/agents/zoe")
    await page.fill("#token", dashboard.token)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(dashboard.url + "/agents/zoe")
    log = page.locator("#log")
    await expect(log.locator(".offline-history")).to_contain_text("does not answer")
    await expect(log.locator(".ln.text")).to_have_text("The build is green: 12 tests passed.")
    await expect(log.locator(".ln.tool")).to_contain_text("make test")
    await expect(log.locator(".ln.turn").last).to_contain_text("end · ok")
    await expect(log).not_to_contain_text("history unavailable")
    # its last state and turn stats, from turn-stats.sqlite
    await expect(page.locator("#b-presence")).to_have_text("offline")
    await expect(page.locator("#b-model")).to_have_text("model · haiku")
    await expect(page.locator("#b-ctx")).to_contain_text("41k")
    await expect(page.locator("#turns tbody tr")).to_have_count(1)
    # nothing was written to its files (reading a WAL database leaves its -wal/-shm beside it: sqlite's own)
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in state.glob("*.sqlite")} == before
