"""The hosts page (issue 26): every host with capacity, agents, version, last heartbeat, lost.

The REAL hive-deployer (in-process, real nats-server) with two agent hosts in its registry
(h2, h3) and agents placed on each; their heartbeats are published here as a hive-agenthost
would (h2 keeps beating, h3 beats once and falls silent, HIVE_HOST_LOST_S=2). The dashboard is
a real uvicorn process; the page is driven in headless Chromium: h3 turns lost, then comes back
when it beats again; every agent shows its host (hosts page, its own page), the home page marks an agent
whose host is lost and links to the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from hive_deployer.lifecycle import Options
from hive_deployer.runtimes import ProcessRuntime
from hive_deployer.service import DeployerService
from hive_deployer.store import AgentRow
from hivewire import codec, subjects
from hivewire.nats_transport import NatsTransport
from hivewire.settings import Settings
from hivewire.wire.hosts import HostHeartbeat
from tests.dashboard.conftest import Dashboard

pytestmark = pytest.mark.e2e
GiB = 1 << 30


def registry(home: Path) -> None:
    now = time.time()
    rec = {"state": "online", "added_at": now, "joined_at": now, "token_used": True, "token_hash": None}
    path = home / "hosts" / "registry.json"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(json.dumps({"hosts": {"h2": {**rec, "agent_limit": 4}, "h3": {**rec, "agent_limit": 0}},
                                "placements": {"bob": "h2", "carol": "h3"}}))


async def beat(t: NatsTransport, host: str, version: str) -> None:
    hb = HostHeartbeat(host=host, sent_at=time.time(), version=version, mem_total=8 * GiB, mem_available=3 * GiB,
                       cpus=4, load1=0.5, runtime="bwrap")
    await t.publish(subjects.host_up(host, "heartbeat"), codec.encode(hb))


@pytest.fixture
async def deployer(dash_settings: Settings, nats_transport: NatsTransport,
                   monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[DeployerService]:
    monkeypatch.setenv("HIVE_DEPLOYER_ENSURE_MANAGER", "0")
    monkeypatch.setenv("HIVE_HOST_LOST_S", "2")
    monkeypatch.setenv("HIVE_HOST_NAME", "core")
    registry(dash_settings.home)
    svc = DeployerService(nats_transport, dash_settings, runtime=ProcessRuntime(allow_unconfined=True),
                          options=Options(stop_timeout=5.0), ensure_manager=False)
    await svc.start()
    now = time.time()
    for name in ("alice", "bob", "carol"):  # carol "runs" on h3: it is lost, so she is dead (host lost)
        await svc.store.save(AgentRow(name=name, state="running" if name == "carol" else "stopped",
                                      desired="stopped", runtime="process", created_at=now, since=now))
    yield svc
    await svc.stop()


async def test_hosts_page_shows_capacity_agents_and_a_lost_host(page: Page, dashboard: Dashboard,
                                                                deployer: DeployerService,
                                                                nats_transport: NatsTransport) -> None:
    async def h2_beats() -> None:
        while True:
            await beat(nats_transport, "h2", "9.9.1")
            await asyncio.sleep(0.5)

    beating = asyncio.create_task(h2_beats())
    await beat(nats_transport, "h3", "9.9.2")  # once: then silent
    try:
        await page.goto(dashboard.url + "/")
        await page.fill("#token", dashboard.token)
        await page.click("button[type=submit]")
        await expect(page.locator("#hosts-link")).to_be_visible()
        await page.click("#hosts-link")
        await expect(page).to_have_url(dashboard.url + "/hosts")
        rows = page.locator("#hosts tbody tr")
        await expect(rows).to_have_count(3)
        core, h2, h3 = (page.locator(f'#hosts tr[data-host="{n}"]') for n in ("core", "h2", "h3"))
        await expect(core.locator(".agents")).to_have_text("alice")
        await expect(core).to_contain_text("core")
        await expect(h2.locator(".state")).to_have_text("online")
        await expect(h2.locator(".agents")).to_have_text("bob")
        await expect(h2.locator(".version")).to_have_text("9.9.1")
        await expect(h2.locator(".capacity")).to_contain_text("1/4 agents · 4 cpus")
        await expect(h2.locator(".capacity")).to_contain_text("free of 8")
        await expect(h2.locator(".heartbeat")).to_contain_text("s ago")
        # h3 is silent: lost within HIVE_HOST_LOST_S and a poll
        await expect(h3.locator(".state")).to_have_text("lost (no heartbeat)", timeout=15_000)
        await expect(h3).to_have_class("lost")
        await expect(page.locator("#hosts-count")).to_contain_text("1 lost")
        await expect(h3.locator(".version")).to_have_text("9.9.2")  # what it said last
        await expect(h2.locator(".state")).to_have_text("online")  # the other one is not affected
        # every agent's host
        by_agent = page.locator("#placements tbody tr")
        await expect(by_agent).to_have_count(3)
        for agent, host in (("alice", "core"), ("bob", "h2"), ("carol", "h3")):
            await expect(page.locator(f'#placements tr[data-agent="{agent}"] .host')).to_have_text(host)
        await expect(page.locator('#placements tr[data-agent="carol"]')).to_contain_text("lost")
        # the home page says carol's host is lost; each agent's page names its host
        await page.goto(dashboard.url + "/")
        await expect(page.locator("#agent-carol .host-lost")).to_have_text("host h3 lost")
        await expect(page.locator("#agent-bob .host-lost")).to_have_count(0)
        await page.goto(dashboard.url + "/agents/carol")
        await expect(page.locator("#b-host")).to_have_text("host · h3 (lost)")
        await page.goto(dashboard.url + "/agents/bob")
        await expect(page.locator("#b-host")).to_have_text("host · h2")
        await page.goto(dashboard.url + "/hosts")
        # h3 reports again: online
        await beat(nats_transport, "h3", "9.9.3")
        await expect(h3.locator(".state")).to_have_text("online", timeout=10_000)
        await expect(h3.locator(".version")).to_have_text("9.9.3")
        await expect(page.locator("#hosts-count")).not_to_contain_text("lost")
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
