"""The broker's pending hints (hive_broker/pending.py): a recv for an agent with nothing
pending skips the scan, and no agent with a pending message is ever skipped."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hive_broker import messages
from hive_broker.pending import PendingHints
from hive_broker.service import BrokerService
from hivewire.nats_transport import NatsTransport
from hivewire.settings import Settings
from hivewire.transport import Msg
from hivewire.wire import agent as wa
from hivewire.wire import broker as w

from .conftest import FAST, Bus, eventually

AGENTS = ["alice", "bob", "carol"]
_instances = itertools.count()


def test_the_floor_rises_with_recvs_and_falls_with_a_put_back() -> None:
    hints = PendingHints()
    resets = hints.resets("bob")
    hints.delivered_upto("bob", 41, resets)
    assert hints.floor("bob") == 42
    stale = hints.resets("bob")
    hints.put_back("bob")  # redelivery after that recv read its count
    hints.delivered_upto("bob", 99, stale)
    assert hints.floor("bob") == 0  # a put-back message may sit anywhere below


def test_a_drain_read_before_an_add_removes_nothing() -> None:
    hints = PendingHints()
    hints.load(["alice"])
    gen = hints.generation("alice")
    hints.added("alice")  # a message committed after the recv read its generation
    hints.drained("alice", gen)
    assert hints.may_have("alice")
    hints.drained("alice", hints.generation("alice"))
    assert not hints.may_have("alice")
    assert not hints.may_have("bob")


async def test_recv_for_an_empty_inbox_runs_no_write_job(
    broker: BrokerService, bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    await bus.register("alice", "bob")
    await bus.send("alice", "bob", "one")
    jobs = 0
    write = broker.db.write

    async def counting(fn: Any, **kw: Any) -> Any:
        nonlocal jobs
        jobs += 1
        return await write(fn, **kw)

    monkeypatch.setattr(broker.db, "write", counting)
    assert [m.body for m in await bus.recv("bob", max=5)] == ["one"]  # fewer than asked: drained
    assert jobs == 1
    assert await bus.recv("bob", max=5) == [] and (await bus.counts("bob")).unread == 0
    assert jobs == 1  # nothing pending: no transaction at all
    await bus.send("alice", "bob", "two")
    assert [m.body for m in await bus.recv("bob", max=5)] == ["two"]


async def test_a_restart_reads_the_pending_agents_once_for_hints_and_wakes(
    nats_transport: NatsTransport, settings: Settings, nats_url: str
) -> None:
    """A broker starting on a file with a pending message wakes its recipient (a wake
    lost to a crash is re-sent) and knows it may have pending messages; nobody else."""
    t = await NatsTransport.connect(nats_url, name="hints-test", forever=False)
    bus = Bus(t)
    await bus.listen()
    first = BrokerService(nats_transport, settings, config=FAST)
    await first.start()
    await bus.register("alice", "bob")
    await bus.send("alice", "bob", "left pending")
    await first.stop()
    bus.wakes.clear()
    second = BrokerService(nats_transport, settings, config=FAST)
    await second.start()
    try:
        await eventually(lambda: _value(bus.wakes_for("bob")))
        assert bus.wakes_for("bob") == [w.Wake(reason="message", ref="")]
        assert bus.wakes_for("alice") == []
        assert second.pending.may_have("bob") and not second.pending.may_have("alice")
        assert [m.body for m in await bus.recv("bob", max=5)] == ["left pending"]
    finally:
        await second.stop()
        await t.close()


async def _value(v: object) -> object:
    return v


async def _pending_in_file(broker: BrokerService) -> set[str]:
    return set(await broker.db.read(messages.agents_with_pending))


async def _oldest_pending(broker: BrokerService) -> dict[str, int]:
    rows = await broker.db.read(lambda c: c.execute(
        "SELECT recipient, MIN(id) FROM messages WHERE acked_at IS NULL AND delivered_at IS NULL GROUP BY recipient"
    ).fetchall())
    return {r[0]: r[1] for r in rows}


async def _restart(broker: BrokerService, agent: str) -> None:
    """A new harness instance (its in-flight messages come back), as the presence
    subscription would see it; called directly so the step is over when it returns."""
    from hivewire import codec

    presence = wa.Presence(state="idle", since=0.0, instance=f"i{next(_instances)}")
    await broker._on_presence(Msg(f"hive.agent.{agent}.presence", codec.encode(presence)))


ops = st.one_of(
    st.tuples(st.just("send"), st.sampled_from(AGENTS), st.sampled_from([*AGENTS, "*"])),
    st.tuples(st.just("recv"), st.sampled_from(AGENTS), st.integers(1, 3)),
    st.tuples(st.just("ack"), st.sampled_from(AGENTS), st.just(0)),
    st.tuples(st.just("restart"), st.sampled_from(AGENTS), st.just(0)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=st.lists(st.lists(ops, min_size=1, max_size=4), min_size=1, max_size=12))
async def test_no_agent_with_a_pending_message_is_ever_skipped(
    broker: BrokerService, bus: Bus, steps: list[list[tuple[str, str, Any]]]
) -> None:
    """Random sends (broadcasts too), recvs, acks and harness restarts, several at once
    per step (so they share batches in any order); after every step each agent with a
    pending message in the file is in the hints, no pending message lies below its
    agent's floor, and a recv for it gets something."""
    await bus.register(*AGENTS)
    in_flight: dict[str, list[str]] = {a: [] for a in AGENTS}

    async def run(op: tuple[str, str, Any]) -> None:
        kind, agent, arg = op
        if kind == "send" and arg != agent:
            await bus.send(agent, arg, f"from {agent}")
        elif kind == "recv":
            in_flight[agent] += [m.id for m in await bus.recv(agent, max=arg)]
        elif kind == "ack" and in_flight[agent]:
            ids, in_flight[agent] = in_flight[agent], []
            await bus.ack(agent, ids)
        elif kind == "restart":
            await _restart(broker, agent)
            in_flight[agent] = []

    for step in steps:
        await asyncio.gather(*(run(op) for op in step))
        pending = await _pending_in_file(broker)
        assert all(broker.pending.may_have(a) for a in pending), (pending, step)
        oldest = await _oldest_pending(broker)
        assert all(oldest[a] >= broker.pending.floor(a) for a in oldest), (oldest, step)
    for agent in await _pending_in_file(broker):
        assert await bus.recv(agent, max=1), agent
