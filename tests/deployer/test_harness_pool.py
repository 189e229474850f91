"""The harness pool (issue 26 phase 2): several agents' harnesses in one process.

Real deployer (bwrap runtime, `harness_pool` on), real broker, real nats-server,
the real claude CLI against the simulator, every turn in its own sandbox:

- three agents run in one pool process (one pid), each under its own harness
  instance, and each one's turn works (the operator's message is acked);
- one agent that fails inside the pool (its turn-stats file is unusable) crashes
  alone: the others' instances stay and their turns still work; repaired, the
  crash watch brings it back;
- stop / start / restart / destroy of one agent change only that agent's
  instance; the others keep theirs and keep answering;
- the pool process itself killed: every agent in it crashes and is restarted.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hive_deployer.runtimes import BwrapRuntime
from hive_deployer.service import DeployerService
from hive_harness.simmodel import SimModel
from hivewire import codec, promsd, subjects
from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient
from hivewire.settings import Settings
from hivewire.wire import broker as wb
from hivewire.wire import ops
from hivewire.wire.agent import Presence
from hivewire.wire.common import Empty
from hivewire.wire.deployer import AgentInfo, DestroyRequest, NameRequest, SpawnRequest
from hivewire.wire.op import Op
from tests.deployer.conftest import fast_options
from tests.support.claude import claude_cli, missing_hint
from tests.support.procs import running, wait_for

pytestmark = pytest.mark.e2e
CLAUDE = claude_cli()
AGENTS = ("alice", "bob", "carol")


@pytest.fixture
async def hive(settings: Settings, nats_transport: NatsTransport, sim_model: SimModel,
               monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    if not CLAUDE.exists():
        pytest.skip(missing_hint())
    if not shutil.which("bwrap"):
        pytest.skip("bwrap is not installed")
    from hive_broker import build as build_broker

    home = tmp_path / "userhome"
    home.mkdir()
    for k, v in {"HIVE_AGENT_CMD": str(CLAUDE), "ANTHROPIC_BASE_URL": sim_model.url,
                 "ANTHROPIC_API_KEY": "sk-simulator", "HOME": str(home), "HIVE_WAKE_POLL_S": "1",
                 "HIVE_HEARTBEAT_S": "0.5", "HIVE_ALLOWED_TOOLS": "", "DISABLE_AUTOUPDATER": "1",
                 "HIVE_DEPLOYER_ENSURE_MANAGER": "0", "HIVE_BROKER_TICK_S": "0.5",
                 "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    settings = Settings.from_env()  # with HIVE_AGENT_CMD: the deployer hands it to the harnesses
    instances: dict[str, str] = {}

    async def on_presence(msg: Any) -> None:
        p = codec.decode(msg.data, Presence)
        if p.state != "offline":
            instances[subjects.token(msg.subject, 2)] = p.instance

    sub = await nats_transport.nc.subscribe("hive.agent.*.presence", cb=on_presence)
    async with running(build_broker, nats_transport, settings):
        svc = DeployerService(nats_transport, settings, runtime=BwrapRuntime(shutil.which("bwrap") or "bwrap"),
                              options=fast_options(harness_pool=True, presence_stale_s=20.0),
                              ensure_manager=False)
        await svc.start()
        try:
            yield {"svc": svc, "client": HiveClient(nats_transport, timeout=30), "instances": instances,
                   "home": settings.home}
        finally:
            await svc.stop()
            await sub.unsubscribe()


async def call(client: HiveClient, op: Op[Any, AgentInfo], req: Any) -> AgentInfo:
    return await client.request(op, req, timeout=60)


async def turn_works(client: HiveClient, agent: str, body: str) -> None:
    """The operator's message to `agent` is handled by a turn and acked."""
    mid = (await client.request(ops.BROKER_SEND, wb.SendRequest(to=agent, body=body), agent="operator")).id

    async def acked() -> bool:
        r = await client.request(ops.MESSAGES_LIST, wb.MessagesListRequest(agent=agent, limit=50))
        return any(m.id == mid and m.acked_at is not None for m in r.messages)

    await wait_for(acked, timeout=120)


async def answers(client: HiveClient, agent: str) -> bool:
    try:
        await client.request(ops.CTL_STATE, Empty(), timeout=3, agent=agent)
        return True
    except Exception:
        return False


async def new_instance(inst: dict[str, str], agent: str, old: str | None) -> str | None:
    cur = inst.get(agent)
    return cur if cur is not None and cur != old else None


async def test_pool_runs_agents_isolates_failures_and_verbs(hive: dict[str, Any]) -> None:
    client, inst, svc = hive["client"], hive["instances"], hive["svc"]
    infos = [await call(client, ops.DEPLOYER_SPAWN, SpawnRequest(name=a)) for a in AGENTS]
    pids = {i.pid for i in infos}
    assert len(pids) == 1 and None not in pids  # one process for all three
    pool_pid = pids.pop()
    assert pool_pid == svc.agents.procs.pool.pid
    # the pool says where its /metrics listens (an agent host reports its port: hive_agenthost)
    assert promsd.url_port(svc.agents.procs.pool.metrics_url) > 0
    for a in AGENTS:
        await wait_for(lambda a=a: new_instance(inst, a, None), timeout=60)
    assert len({inst[a] for a in AGENTS}) == 3  # each its own harness instance
    await asyncio.gather(*(turn_works(client, a, f"hello {a}") for a in AGENTS))

    # --- one agent fails inside the pool: only it crashes --------------------------------------
    before = dict(inst)
    state = hive["home"] / "agents/carol/state"
    await call(client, ops.DEPLOYER_STOP, NameRequest(name="carol"))
    state.rename(state.with_name("state.aside"))
    state.write_text("not a directory")  # carol's harness cannot make its state dir: it fails at start
    try:  # the pool takes it, then its start fails inside the pool: a crash of carol alone
        await call(client, ops.DEPLOYER_START, NameRequest(name="carol"))
    except Exception:  # or it is already reported crashed when the reply is made
        pass

    async def carol_crashed() -> AgentInfo | None:
        lst = [a for a in (await svc.agents.list()) if a.name == "carol"]
        return lst[0] if lst and lst[0].state == "crashed" and lst[0].crashes >= 1 else None

    crashed = await wait_for(carol_crashed, timeout=60)
    assert "harness failed" in (crashed.last_error or "")
    assert svc.agents.procs.pool.pid == pool_pid  # the pool went on
    assert inst["alice"] == before["alice"] and inst["bob"] == before["bob"]
    await turn_works(client, "alice", "still there, alice?")
    state.unlink()  # repaired: the crash watch's next restart works
    state.with_name("state.aside").rename(state)
    await wait_for(lambda: new_instance(inst, "carol", before["carol"]), timeout=60)
    await turn_works(client, "carol", "back, carol?")

    # --- lifecycle verbs touch only their agent ------------------------------------------------
    before = dict(inst)
    await call(client, ops.DEPLOYER_STOP, NameRequest(name="bob"))
    assert not await answers(client, "bob")
    assert await answers(client, "alice") and await answers(client, "carol")
    await call(client, ops.DEPLOYER_START, NameRequest(name="bob"))
    await wait_for(lambda: new_instance(inst, "bob", before["bob"]), timeout=60)
    await call(client, ops.DEPLOYER_RESTART, NameRequest(name="alice"))
    await wait_for(lambda: new_instance(inst, "alice", before["alice"]), timeout=60)
    assert inst["carol"] == before["carol"]
    await call(client, ops.DEPLOYER_DESTROY, DestroyRequest(name="carol"))
    assert not await answers(client, "carol")
    await asyncio.gather(turn_works(client, "alice", "after the verbs, alice"),
                         turn_works(client, "bob", "after the verbs, bob"))
    assert svc.agents.procs.pool.pid == pool_pid

    # --- the pool process dies: every agent in it crashes and comes back --------------------------
    before = dict(inst)
    os.kill(pool_pid, signal.SIGKILL)
    for a in ("alice", "bob"):
        await wait_for(lambda a=a: new_instance(inst, a, before[a]), timeout=90)
    lst = {a.name: a for a in await svc.agents.list()}
    assert all(lst[a].crashes >= 1 and lst[a].state == "running" for a in ("alice", "bob"))
    assert svc.agents.procs.pool.pid not in (None, pool_pid)
    await turn_works(client, "bob", "after the pool died, bob")
