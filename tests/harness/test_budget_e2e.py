"""Budgets and the runaway breaker end to end: the real claude CLI against the simulator, the REAL
hive-broker (with its cost ledger on JetStream) on a real nats-server, the `hive` CLI as a process.

- alice's budget is below one turn's cost: she handles one message and parks over_budget; three
  more messages stay pending (never taken); `hive budget set` raises it and all three are handled
  exactly once; the ledger's total for alice equals the sum of her turn rows; the operator got one
  alert at 80% and one at 100%.
- every turn fails (the simulator answers 500): alice parks with reason runaway after
  HIVE_RUNAWAY_FAILED_TURNS failed turns; `hive agents resume alice` resumes her.
- a swarm budget below one turn's cost: alice and bob park over_budget after (at most) one turn each,
  their later messages stay pending, while manager (outside the swarm budget) handles all of his; the
  swarm's spend is alice's and bob's turns only; clearing it lets both take what waited, once.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hive_harness.simmodel import SimModel, Step
from hivewire import subjects
from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient, MicroService
from hivewire.wire import broker as wb
from hivewire.wire import ops
from hivewire.wire.agent import AgentState, HistoryRequest
from hivewire.wire.common import Empty
from tests.support.procs import wait_for

pytestmark = pytest.mark.e2e
HIVE = str(Path(sys.executable).parent / "hive")


@pytest.fixture
async def fresh_stream(nats_transport: NatsTransport) -> AsyncIterator[None]:
    """The session's nats-server keeps JetStream state between tests: no ledger stream before or after."""
    js = nats_transport.nc.jetstream()

    async def drop() -> None:
        try:
            await js.delete_stream(subjects.LEDGER_STREAM)
        except Exception:  # not there
            pass

    await drop()
    yield
    await drop()


async def hive(*args: str) -> str:
    """The `hive` CLI as a process (async: the broker runs in this event loop)."""
    proc = await asyncio.create_subprocess_exec(HIVE, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, env={**os.environ})
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def inbox(client: HiveClient, agent: str) -> list[wb.Message]:
    r = await client.request(ops.MESSAGES_LIST, wb.MessagesListRequest(agent=agent, limit=200))
    return r.messages


async def op_send(client: HiveClient, body: str, to: str = "alice") -> str:
    return (await client.request(ops.BROKER_SEND, wb.SendRequest(to=to, body=body), agent="operator")).id


async def state(client: HiveClient, agent: str = "alice") -> AgentState:
    return await client.request(ops.CTL_STATE, Empty(), agent=agent)


async def test_budget_parks_after_one_turn_keeps_messages_pending_and_resumes_exactly_once(
    fresh_stream: None, real_broker: MicroService, sim: SimModel, harness_factory: Any, client: HiveClient,
) -> None:
    await hive("budget", "set", "alice", "--usd", "0.000001")
    alice = await harness_factory("alice")
    first = await op_send(client, "task number one")

    async def parked() -> bool:
        return (await state(client)).status == "over_budget"

    await wait_for(parked, timeout=90)
    assert (await alice.stats.last(5))[0].cost_usd > 0.000001  # one turn cost more than the budget
    assert alice.presence().state == "waiting" and alice.presence().reason == "over_budget"
    later = [await op_send(client, f"task number {n}") for n in ("two", "three", "four")]
    sent_at = time.monotonic()

    async def rechecked() -> bool:  # the harness looked at its budget again after they arrived
        return alice.guard.checked_at > sent_at and alice.guard.over_budget is not None

    await wait_for(rechecked, timeout=30)
    msgs = {m.id: m for m in await inbox(client, "alice")}
    assert msgs[first].acked_at is not None
    assert all(msgs[i].delivered_at is None and msgs[i].acked_at is None for i in later)  # never taken
    assert len(await alice.stats.last(10)) == 1

    async def alerts() -> list[str]:
        got = [m.body for m in await inbox(client, "operator") if m.body.startswith("[budget] agent alice")]
        return got if len(got) == 2 else []

    bodies = sorted(await wait_for(alerts, timeout=30))
    assert "100%" in bodies[0] and "80%" in bodies[1]

    out = await hive("budget", "set", "alice", "--usd", "100")
    assert "budget alice: $100 per day" in out

    async def all_acked() -> bool:
        got = {m.id: m for m in await inbox(client, "alice")}
        return all(got[i].acked_at is not None for i in later)

    await wait_for(all_acked, timeout=120)
    rows = await alice.stats.last(10)
    assert len(rows) == 4 and all(r.result_kind == "ok" for r in rows)
    hist = await client.request(ops.CTL_HISTORY, HistoryRequest(limit=1000), agent="alice")
    started = [e.payload.get("message_id") for e in hist.events if e.kind == "turn_start"]
    assert sorted(started) == sorted([first, *later])  # each message started exactly one turn
    assert (await state(client)).status == "online"

    async def ledger_total() -> wb.CostsReply | None:
        rep = await client.request(ops.LEDGER_COSTS, wb.CostsRequest(agent="alice"))
        return rep if rep.turns == 4 else None

    rep = await wait_for(ledger_total, timeout=30)
    assert rep.total_usd == pytest.approx(sum(r.cost_usd for r in rows), rel=1e-9)
    assert rep.total_tokens == sum(r.input_tokens + r.output_tokens + r.cache_read_input_tokens
                                   + r.cache_creation_input_tokens for r in rows)
    assert "alice" in await hive("costs", "--by", "agent")
    assert await alerts()  # still exactly two alerts: raising the budget sent none


async def test_failing_turns_park_as_runaway_until_the_operator_resumes(
    fresh_stream: None, real_broker: MicroService, sim: SimModel, harness_factory: Any, client: HiveClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HIVE_RUNAWAY_FAILED_TURNS", "2")
    sim.script.add(*[Step(kind="error", status=500, match="doomed work") for _ in range(30)])
    alice = await harness_factory("alice")
    mid = await op_send(client, "doomed work")

    async def runaway() -> bool:
        return (await state(client)).status == "runaway"

    await wait_for(runaway, timeout=120)
    rows = await alice.stats.last(10)
    assert [r.result_kind for r in rows] == ["failed", "failed"]  # parked right after the configured count
    assert alice.presence().reason == "runaway"
    assert (Path(alice.state_dir) / "runaway").exists()
    with sim.script._lock:
        sim.script.steps.clear()  # the model works again; alice stays parked until the operator says so
    assert "alice: resumed" in await hive("agents", "resume", "alice")

    async def acked() -> bool:
        return any(m.id == mid and m.acked_at is not None for m in await inbox(client, "alice"))

    await wait_for(acked, timeout=120)
    assert [r.result_kind for r in await alice.stats.last(10)] == ["ok", "failed", "failed"]
    assert (await state(client)).status == "online"


async def test_swarm_budget_parks_the_swarm_but_not_the_manager(
    fresh_stream: None, real_broker: MicroService, sim: SimModel, harness_factory: Any, client: HiveClient,
) -> None:
    out = await hive("budget", "set", "--swarm", "--usd", "0.000001")
    assert "swarm" in out
    workers = {name: await harness_factory(name) for name in ("alice", "bob")}
    manager = await harness_factory("manager")
    first = {name: await op_send(client, f"{name}, first task", to=name) for name in workers}
    boss = [await op_send(client, f"manager task {n}", to="manager") for n in ("one", "two", "three")]

    async def parked() -> bool:
        return [(await state(client, n)).status for n in workers] == ["over_budget"] * len(workers)

    await wait_for(parked, timeout=120)
    for h in workers.values():
        assert h.presence().state == "waiting" and h.presence().reason == "over_budget"
    later = {name: await op_send(client, f"{name}, later task", to=name) for name in workers}
    sent_at = time.monotonic()

    async def rechecked() -> bool:  # each looked at its budgets again after the later messages arrived
        return all(h.guard.checked_at > sent_at and h.guard.over_budget is not None for h in workers.values())

    await wait_for(rechecked, timeout=30)

    async def manager_done() -> bool:
        got = {m.id: m for m in await inbox(client, "manager")}
        return all(got[i].acked_at is not None for i in boss)

    await wait_for(manager_done, timeout=180)  # the manager kept working meanwhile
    assert (await state(client, "manager")).status == "online"
    assert len(await manager.stats.last(10)) == 3 and manager.guard.over_budget is None
    handled: dict[str, int] = {}
    for name, h in workers.items():
        msgs = {m.id: m for m in await inbox(client, name)}
        handled[name] = len(await h.stats.last(10))
        assert handled[name] <= 1  # at most the turn that took the swarm over its budget
        assert (msgs[first[name]].acked_at is not None) == (handled[name] == 1)
        assert msgs[later[name]].delivered_at is None and msgs[later[name]].acked_at is None  # never taken
    assert sum(handled.values()) >= 1
    worker_rows = [r for h in workers.values() for r in await h.stats.last(10)]
    worker_usd = sum(r.cost_usd for r in worker_rows)
    manager_usd = sum(r.cost_usd for r in await manager.stats.last(10))
    assert worker_usd > 0.000001 and manager_usd > 0

    async def swarm_status() -> wb.BudgetStatus | None:  # once the ledger has every turn
        rep = await client.request(ops.BUDGET_SHOW, Empty())
        costs = await client.request(ops.LEDGER_COSTS, wb.CostsRequest())
        return rep.budgets[0] if costs.turns == sum(handled.values()) + 3 else None

    st = await wait_for(swarm_status, timeout=30)
    assert st.budget.agent is None and st.over  # the swarm's spend leaves the manager's turns out
    assert st.spent_usd == pytest.approx(worker_usd, rel=1e-9)

    await hive("budget", "clear", "--swarm")

    async def all_taken() -> bool:
        for name in workers:
            got = {m.id: m for m in await inbox(client, name)}
            if not all(got[i].acked_at is not None for i in (first[name], later[name])):
                return False
        return True

    await wait_for(all_taken, timeout=180)
    for name in workers:
        hist = await client.request(ops.CTL_HISTORY, HistoryRequest(limit=1000), agent=name)
        started = [e.payload.get("message_id") for e in hist.events if e.kind == "turn_start"]
        assert sorted(started) == sorted([first[name], later[name]])  # each message one turn, once
        assert (await state(client, name)).status == "online"
