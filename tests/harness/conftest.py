"""Harness test fixtures: the Messages-API simulator, the real broker in-process, harness runners.

`broker` is the REAL hive-broker (`real_broker`, in-process on the test's nats-server)
with a `BrokerView` that reads its store: inboxes, acks and redeliveries are the
broker's own, under the ids it issued.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hive_broker.messages import COLS, to_wire
from hive_harness.service import HarnessService
from hive_harness.simmodel import SimModel
from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient, MicroService
from hivewire.settings import Settings
from hivewire.wire import broker as wb
from hivewire.wire import ops
from tests.support.claude import claude_cli, missing_hint, pin_model
from tests.support.procs import running

ROOT = Path(__file__).resolve().parents[2]
CLAUDE = claude_cli()  # the pin in .tools, or HIVE_TEST_CLAUDE_VERSION's .tools-<ver>
DATA = Path(__file__).resolve().parent / "data"


class BrokerView:
    """The REAL broker (the `real_broker` fixture), read through its store: what tests check.

    Ids are the broker's (decimal strings). `inbox(agent)` is what was sent to `agent`,
    oldest first; `acked(id)`; `redeliveries(id)` is the broker's redelivery count (a
    message taken by one turn and acked is `acked` with 0 redeliveries: handled once).
    """

    def __init__(self, svc: Any) -> None:
        self.svc = svc

    async def _rows(self, sql: str, *args: Any) -> list[Any]:
        return await self.svc.db.read(lambda c: c.execute(sql, args).fetchall())

    async def inbox(self, agent: str) -> list[wb.Message]:
        rows = await self._rows(f"SELECT {COLS} FROM messages WHERE recipient = ? ORDER BY id", agent)
        return [to_wire(r) for r in rows]

    async def message(self, mid: str) -> wb.Message | None:
        rows = await self._rows(f"SELECT {COLS} FROM messages WHERE id = ?", int(mid))
        return to_wire(rows[0]) if rows else None

    async def acked(self, mid: str) -> bool:
        m = await self.message(mid)
        return m is not None and m.acked_at is not None

    async def redeliveries(self, mid: str) -> int:
        rows = await self._rows("SELECT redelivery_count FROM messages WHERE id = ?", int(mid))
        return int(rows[0][0]) if rows else 0

    async def handled_once(self, mid: str) -> bool:
        """Acked, and never put back for another delivery."""
        return await self.acked(mid) and await self.redeliveries(mid) == 0


@pytest.fixture
def sim(sim_model: SimModel) -> SimModel:
    """The Messages-API simulator (scripted; not a model): the suite-wide `sim_model`."""
    return sim_model


@pytest.fixture
async def real_broker(nats_transport: NatsTransport, settings: Settings, client: HiveClient,
                      monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MicroService]:
    """The REAL hive-broker in-process (fast scheduler), with alice, bob and manager known."""
    from hive_broker import build as build_broker

    monkeypatch.setenv("HIVE_BROKER_TICK_S", "0.5")
    async with running(build_broker, nats_transport, settings) as svc:
        for name in ("alice", "bob", "manager"):
            await client.request(ops.REGISTRY_UPSERT, wb.RegistryRequest(name=name))
        yield svc


@pytest.fixture
def cli_env(hive_home: Path, tmp_path: Path, sim: SimModel, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Env for harnesses running the real claude CLI against the simulator."""
    if not CLAUDE.exists():
        pytest.skip(missing_hint())
    home = tmp_path / "userhome"
    home.mkdir()
    env = {
        "HIVE_AGENT_CMD": str(CLAUDE),
        "ANTHROPIC_BASE_URL": sim.url,
        "ANTHROPIC_API_KEY": "sk-simulator",
        "HOME": str(home),
        "HIVE_RATE_LIMIT_PARK_S": "2",
        "HIVE_WAKE_POLL_S": "1",
        "HIVE_HEARTBEAT_S": "0.5",
        "HIVE_ALLOWED_TOOLS": "",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    return {**env, "HIVE_HOME": str(hive_home), "HIVE_NATS_URL": os.environ["HIVE_NATS_URL"],
            "HIVE_METRICS_ADDR": "127.0.0.1:0"}


@pytest.fixture
async def broker(real_broker: MicroService) -> BrokerView:
    """The real broker with alice, bob and manager known, and a view of its store."""
    return BrokerView(real_broker)


@pytest.fixture
async def client(nats_transport: NatsTransport) -> HiveClient:
    return HiveClient(nats_transport, timeout=10.0)


@pytest.fixture
async def harness_factory(
    nats_url: str, settings: Settings, cli_env: dict[str, str]
) -> AsyncIterator[Any]:
    """Start in-process harnesses (own NATS connection each); all stopped at the end."""
    started: list[tuple[HarnessService, NatsTransport]] = []

    async def start(agent: str, model: str | None = None) -> HarnessService:
        if model is not None:
            pin_model(settings.home, agent, model)
        t = await NatsTransport.connect(nats_url, name=f"hive-harness-{agent}", forever=False)
        svc = HarnessService(t, Settings.from_env(), agent)
        await svc.start()
        started.append((svc, t))
        return svc

    async def stop(svc: HarnessService) -> None:
        for i, (s, t) in enumerate(started):
            if s is svc:
                await s.stop()
                await t.close()
                started.pop(i)
                return

    start.stop = stop  # type: ignore[attr-defined]
    yield start
    for s, t in reversed(started):
        await s.stop()
        await t.close()
