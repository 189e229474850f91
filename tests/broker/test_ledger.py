"""The cost ledger in hive-broker: periods, grouping, JetStream ingest exactly once, budgets over NATS,
operator alerts at 80% and 100% once per period, wakes on a budget change."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hive_broker import ledger
from hive_broker.service import BrokerService
from hivewire import codec, subjects
from hivewire.db import connect
from hivewire.errors import HiveError
from hivewire.nats_transport import NatsTransport
from hivewire.wire import broker as w
from hivewire.wire import ops
from hivewire.wire.agent import TurnStats
from hivewire.wire.common import Empty

from .conftest import Bus
from support.procs import wait_for


def ts(s: str) -> float:
    return dt.datetime.fromisoformat(s).replace(tzinfo=dt.UTC).timestamp()


def test_periods_are_utc_day_iso_week_and_month() -> None:
    now = ts("2026-12-31T23:59:00")  # a Thursday
    assert ledger.period("day", now) == (ts("2026-12-31T00:00:00"), ts("2027-01-01T00:00:00"))
    assert ledger.period("week", now) == (ts("2026-12-28T00:00:00"), ts("2027-01-04T00:00:00"))
    assert ledger.period("month", now) == (ts("2026-12-01T00:00:00"), ts("2027-01-01T00:00:00"))
    assert ledger.period("month", ts("2026-02-10T12:00:00"))[1] == ts("2026-03-01T00:00:00")


def turn(agent: str = "alice", usd: float = 0.5, tokens: int = 100, at: float = 0.0, **kw: Any) -> TurnStats:
    return TurnStats(agent=agent, model=kw.pop("model", "haiku"), wake_from="bob", result_kind="ok", started_at=at,
                     ended_at=at, duration_ms=0, input_tokens=tokens, cost_usd=usd,
                     turn_id=kw.pop("turn_id", uuid.uuid4().hex), **kw)


def test_costs_group_by_agent_model_day_session_and_count_a_turn_once(tmp_path: Any) -> None:
    conn = connect(tmp_path / "ledger.sqlite")
    ledger.MIGRATIONS.up(conn)
    d1, d2 = ts("2026-05-01T10:00:00"), ts("2026-05-02T10:00:00")
    rows = [("alice", turn(usd=1.0, at=d1, model_costs={"opus": 0.75, "haiku": 0.25}, turn_id="a1")),
            ("alice", turn(usd=1.0, at=d1, model_costs={"opus": 0.75, "haiku": 0.25}, turn_id="a1")),  # again
            ("bob", turn("bob", usd=2.0, at=d2, model="haiku", turn_id="b1")),  # no modelUsage: its model
            ("", turn("", usd=4.0, at=d2, session="s-1", turn_id="s1"))]
    assert ledger.ingest(conn, [ledger.row_values(a, r, i) for i, (a, r) in enumerate(rows)]) == 3
    by = {k: {(r.key, r.key2): (r.cost_usd, r.turns) for r in ledger.costs(conn, w.CostsRequest(by=k)).rows}
          for k in ("agent", "model", "day", "session")}
    assert by["agent"] == {("alice", ""): (1.0, 1), ("bob", ""): (2.0, 1), ("", ""): (4.0, 1)}
    assert by["model"] == {("opus", ""): (0.75, 1), ("haiku", ""): (6.25, 3)}
    assert by["day"] == {("2026-05-01", ""): (1.0, 1), ("2026-05-02", ""): (6.0, 2)}
    assert by["session"] == {("s-1", ""): (4.0, 1)}
    rep = ledger.costs(conn, w.CostsRequest(by="day", then="agent", since=d2))
    assert [(r.key, r.key2, r.cost_usd) for r in rep.rows] == [("2026-05-02", "", 4.0), ("2026-05-02", "bob", 2.0)]
    assert (rep.total_usd, rep.turns) == (6.0, 2)
    conn.close()


@pytest.fixture
async def fresh_stream(nats_transport: NatsTransport) -> AsyncIterator[Any]:
    """The session's nats-server keeps JetStream state between tests: start and end without the ledger stream."""
    js = nats_transport.nc.jetstream()

    async def drop() -> None:
        try:
            await js.delete_stream(subjects.LEDGER_STREAM)
        except Exception:  # not there
            pass

    await drop()
    yield js
    await drop()


async def publish(js: Any, agent: str, row: TurnStats) -> None:
    await js.publish(ops.LEDGER.subject_for(agent=agent), codec.encode(row), headers={"Nats-Msg-Id": row.turn_id})


async def test_jetstream_rows_counted_once_even_resent_and_agent_is_the_subject(
        fresh_stream: Any, broker: BrokerService, bus: Bus) -> None:
    await wait_for(lambda: _true(broker.ledger.ready.is_set()))
    rows = [turn(usd=0.25) for _ in range(5)]
    for r in rows:
        await publish(fresh_stream, "alice", r)
    await publish(fresh_stream, "alice", rows[0])  # a resend inside the duplicate window: dropped by the stream
    liar = turn("bob", usd=9.0)  # claims to be bob, published on alice's subject: counted as alice's
    await publish(fresh_stream, "alice", liar)

    async def total() -> w.CostsReply | None:
        rep = await bus.operator(ops.LEDGER_COSTS, w.CostsRequest(by="agent"))
        return rep if rep.turns == 6 else None

    rep = await wait_for(total)
    assert [(r.key, r.cost_usd, r.turns) for r in rep.rows] == [("alice", 10.25, 6)]
    # a row delivered again after the duplicate window (ledger key, not the stream) still counts once
    await broker.ledger.db.write(lambda c: ledger.ingest(c, [ledger.row_values("alice", rows[1], 99)]))
    assert (await bus.operator(ops.LEDGER_COSTS, w.CostsRequest())).turns == 6


async def _true(v: bool) -> bool:
    return v


async def test_budgets_over_nats_spend_wakes_and_alerts_once(
        fresh_stream: Any, broker: BrokerService, bus: Bus) -> None:
    await wait_for(lambda: _true(broker.ledger.ready.is_set()))
    with pytest.raises(HiveError) as err:
        await bus.operator(ops.BUDGET_SET, w.BudgetSetRequest(agent="alice", swarm=True, usd=1.0))
    assert err.value.code == "bad_request"
    st = await bus.operator(ops.BUDGET_SET, w.BudgetSetRequest(agent="alice", usd=1.0, per="week"))
    assert (st.budget.agent, st.budget.usd, st.budget.per, st.over) == ("alice", 1.0, "week", False)
    await wait_for(lambda: _true(any(wk.ref == "budget" for wk in bus.wakes_for("alice"))))
    await bus.operator(ops.BUDGET_SET, w.BudgetSetRequest(swarm=True, tokens=10_000))
    await wait_for(lambda: _true(any(wk.ref == "budget" for wk in bus.wakes_for("bob"))))  # swarm: everyone

    for usd in (0.5, 0.35, 0.1, 0.2):  # 50%, 85% (alert 80), 95%, 115% (alert 100)
        await publish(fresh_stream, "alice", turn(usd=usd, tokens=10, at=time.time()))

    async def alerts() -> list[w.Message]:
        msgs = (await bus.client.request(ops.MESSAGES_LIST, w.MessagesListRequest(agent="operator", limit=50))).messages
        got = [m for m in msgs if m.body.startswith("[budget]")]
        return got if len(got) >= 2 else []

    got = sorted(m.body for m in await wait_for(alerts))
    assert len(got) == 2 and all(m.startswith("[budget] agent alice has used") for m in got)
    assert "100%" in got[0] and "parked" in got[0] and "80%" in got[1]
    spend = await bus.call("alice", ops.BROKER_SPEND, Empty())
    mine = {("agent" if b.budget.agent else "swarm"): b for b in spend.budgets}
    assert mine["agent"].over and mine["agent"].spent_usd == pytest.approx(1.15)
    assert mine["swarm"].spent_tokens == 40 and mine["swarm"].agent_spent_tokens == 40
    manager = await bus.call("manager", ops.BROKER_SPEND, Empty())
    assert manager.budgets == []  # the swarm budget leaves manager out unless include_manager
    shown = await bus.operator(ops.BUDGET_SHOW, Empty())
    assert [b.budget.agent for b in shown.budgets] == [None, "alice"]
    assert (await bus.operator(ops.BUDGET_CLEAR, w.BudgetClearRequest(agent="alice"))).ok
    assert not (await bus.operator(ops.BUDGET_CLEAR, w.BudgetClearRequest(agent="alice"))).ok
    await publish(fresh_stream, "alice", turn(usd=0.01, at=time.time()))
    await wait_for(lambda: _count_turns(bus, 5))
    assert len(await alerts()) == 2  # no new alert: alice's budget is gone and the swarm's is at 0.5%


async def _count_turns(bus: Bus, n: int) -> bool:
    return (await bus.operator(ops.LEDGER_COSTS, w.CostsRequest())).turns == n
