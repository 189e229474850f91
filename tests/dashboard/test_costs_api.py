"""The dashboard's cost and budget API (issue 24) against the REAL hive-broker and its cost ledger.

Turn rows reach the ledger as a harness sends them (JetStream on `hive.agent.<a>.ledger`, a
session's on `hive.session.ledger`); deployer, backup and harnesses are the FAKES of fakes.py
(a harness answers ctl.state with its last turn's dollars and tokens, and ctl.resume).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from hivewire import codec, subjects
from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient
from hivewire.wire import broker as wb
from hivewire.wire import ops
from hivewire.wire.agent import TurnStats
from tests.dashboard.conftest import Stack
from tests.support.ledger import fresh_ledger_stream
from tests.support.procs import wait_for

Client = AsyncTestClient  # type: ignore[type-arg]
DAY = 86400


@pytest.fixture
async def fresh_ledger(nats_transport: NatsTransport) -> AsyncIterator[None]:
    async with fresh_ledger_stream(nats_transport.nc):
        yield


@pytest.fixture
async def ledger_stack(fresh_ledger: None, real_stack: Stack) -> Stack:
    """The real broker with its ledger consuming a fresh stream."""
    async def ready() -> bool:
        return bool(real_stack.broker.ledger.ready.is_set())

    await wait_for(ready, timeout=30)
    return real_stack


def turn(agent: str, usd: float, tokens: int, model: str = "claude-haiku", at: float | None = None,
         model_costs: dict[str, float] | None = None, session: str = "") -> TurnStats:
    at = time.time() if at is None else at
    return TurnStats(agent=agent, session=session, model=model, wake_from="message", result_kind="ok",
                     started_at=at - 1, ended_at=at, duration_ms=1000, input_tokens=tokens - 10, output_tokens=10,
                     cost_usd=usd, model_costs=model_costs or {model: usd}, turn_id=f"t-{uuid.uuid4().hex}")


async def put(nats: NatsTransport, *rows: TurnStats) -> None:
    """Publish turn rows as a harness (or the deployer, for a session) does, and wait until the ledger has them."""
    js = nats.nc.jetstream()
    c = HiveClient(nats)
    before = (await c.request(ops.LEDGER_COSTS, wb.CostsRequest())).turns
    for r in rows:
        subject = subjects.SESSION_LEDGER if r.session else subjects.ledger_turn(r.agent)
        await js.publish(subject, codec.encode(r), headers={"Nats-Msg-Id": r.turn_id})

    async def ingested() -> bool:
        return (await c.request(ops.LEDGER_COSTS, wb.CostsRequest())).turns == before + len(rows)

    await wait_for(ingested, timeout=30)


def today_start() -> float:
    now = time.time()
    return now - now % DAY


def day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


@pytest.fixture
async def seeded(ledger_stack: Stack, nats_transport: NatsTransport) -> dict[str, Any]:
    """Today: alice two turns (haiku; sonnet + a haiku sub-call), manager one, a session one.
    Three days ago: alice one more (not today's)."""
    now = time.time()
    old = today_start() - 3 * DAY + 3600
    rows = {
        "a1": turn("alice", 0.10, 1000, at=now - 5),
        "a2": turn("alice", 0.30, 3000, model="claude-sonnet", model_costs={"claude-sonnet": 0.25,
                                                                             "claude-haiku": 0.05}, at=now - 4),
        "m1": turn("manager", 0.50, 5000, at=now - 3),
        "s1": turn("", 0.07, 700, session=str(uuid.uuid4()), at=now - 2),
        "a_old": turn("alice", 1.00, 10_000, at=old),
    }
    await put(nats_transport, *rows.values())
    return {"rows": rows, "old": old}


async def test_spend_today_and_all_time_by_agent(authed: Client, seeded: dict[str, Any]) -> None:
    r = await authed.get("/api/costs", params={"by": "agent", "days": 1})
    assert r.status_code == 200, r.text
    got = {row["key"]: (row["cost_usd"], row["tokens"], row["turns"]) for row in r.json()["rows"]}
    assert got == {"alice": (pytest.approx(0.40), 4000, 2), "manager": (pytest.approx(0.50), 5000, 1),
                   "": (pytest.approx(0.07), 700, 1)}
    assert r.json()["total_usd"] == pytest.approx(0.97)
    every = (await authed.get("/api/costs", params={"by": "agent"})).json()
    assert {row["key"]: row["turns"] for row in every["rows"]} == {"alice": 3, "manager": 1, "": 1}
    sid = seeded["rows"]["s1"].session
    by_session = (await authed.get("/api/costs", params={"by": "session"})).json()
    assert [(row["key"], row["turns"]) for row in by_session["rows"]] == [(sid, 1)]
    assert (await authed.get("/api/costs", params={"by": "colour"})).status_code == 400


async def test_agent_spend_last_turn_today_all_time(authed: Client, seeded: dict[str, Any]) -> None:
    r = await authed.get("/api/agents/alice/spend")
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["last_turn"] == {"usd": 0.0123, "tokens": 120_000}  # the harness's ctl.state (the FAKE's figures)
    assert s["today"] == {"usd": pytest.approx(0.40), "tokens": 4000, "turns": 2}
    assert s["all_time"] == {"usd": pytest.approx(1.40), "tokens": 14_000, "turns": 3}
    assert s["status"] == "online"
    # an agent whose harness does not answer: the ledger's figures, no last turn, no status
    s = (await authed.get("/api/agents/bob/spend")).json()
    assert s == {"last_turn": None, "status": None, "today": {"usd": 0.0, "tokens": 0, "turns": 0},
                 "all_time": {"usd": 0.0, "tokens": 0, "turns": 0}}
    assert (await authed.get("/api/agents/Not A Name/spend")).status_code == 400


async def test_per_day_charts_by_model_and_by_agent(authed: Client, seeded: dict[str, Any]) -> None:
    today, old = day(time.time()), day(seeded["old"])
    r = await authed.get("/api/costs/chart", params={"by": "model", "days": 14})
    assert r.status_code == 200, r.text
    svg = r.json()["svg"]
    assert svg.startswith('<svg class="spend-chart"') and svg.endswith("</svg>")
    # one bar segment a day and model, its dollars in its title; a turn's dollars split by its model_costs
    assert f"<title>{today} claude-haiku: $0.7200</title>" in svg  # 0.10 + 0.05 + 0.50 + 0.07
    assert f"<title>{today} claude-sonnet: $0.2500</title>" in svg
    assert f"<title>{old} claude-haiku: $1.0000</title>" in svg
    assert svg.count("<title>") == 3 and r.json()["total_usd"] == pytest.approx(1.97)
    svg = (await authed.get("/api/costs/chart", params={"by": "agent", "days": 14})).json()["svg"]
    assert f"<title>{today} alice: $0.4000</title>" in svg and f"<title>{today} manager: $0.5000</title>" in svg
    assert f"<title>{today} (sessions): $0.0700</title>" in svg and f"<title>{old} alice: $1.0000</title>" in svg
    # two days: the old turn is outside
    r = (await authed.get("/api/costs/chart", params={"by": "agent", "days": 2})).json()
    assert old not in r["svg"] and r["total_usd"] == pytest.approx(0.97)
    assert (await authed.get("/api/costs/chart", params={"by": "session"})).status_code == 400


async def test_set_show_and_clear_budgets(authed: Client, seeded: dict[str, Any]) -> None:
    r = await authed.post("/api/budgets", json={"agent": "alice", "usd": 0.5, "per": "day"})
    assert r.status_code == 201, r.text
    assert r.json()["result"]["budget"]["agent"] == "alice"
    r = await authed.post("/api/budgets", json={"swarm": True, "tokens": 8000, "per": "week"})
    assert r.status_code == 201, r.text
    shown = (await authed.get("/api/budgets")).json()["budgets"]
    assert [b["budget"]["agent"] for b in shown] == [None, "alice"]  # the swarm's first
    swarm, alice = shown
    # the swarm leaves the manager out: alice's 4000 tokens today and the session's 700 this week
    assert (swarm["budget"]["tokens"], swarm["budget"]["per"]) == (8000, "week")
    assert swarm["spent_tokens"] >= 4700 and swarm["fraction"] == pytest.approx(swarm["spent_tokens"] / 8000)
    assert alice["spent_usd"] == pytest.approx(0.40) and alice["fraction"] == pytest.approx(0.8)
    assert alice["over"] is False
    # lowered below today's spend: over
    await authed.post("/api/budgets", json={"agent": "alice", "usd": 0.3})
    alice = next(b for b in (await authed.get("/api/budgets")).json()["budgets"] if b["budget"]["agent"] == "alice")
    assert alice["over"] is True and alice["budget"]["usd"] == 0.3
    # refused: no limit, a negative one, an unknown period, a bad name
    for body in ({"agent": "alice"}, {"agent": "alice", "usd": -1}, {"agent": "alice", "usd": 1, "per": "year"},
                 {"agent": "../etc", "usd": 1}):
        r = await authed.post("/api/budgets", json=body)
        assert r.status_code == 400, (body, r.text)
    r = await authed.post("/api/budgets/clear", json={"agent": "alice"})
    assert r.status_code == 201, r.text
    assert [b["budget"]["agent"] for b in (await authed.get("/api/budgets")).json()["budgets"]] == [None]
    await authed.post("/api/budgets/clear", json={"swarm": True})
    assert (await authed.get("/api/budgets")).json()["budgets"] == []


async def test_resume_lifts_a_runaway_park(authed: Client, ledger_stack: Stack) -> None:
    alice = ledger_stack.harnesses["alice"]
    alice.status = "runaway"
    assert (await authed.get("/api/agents/alice/spend")).json()["status"] == "runaway"
    r = await authed.post("/api/agents/alice/resume")
    assert r.status_code == 201, r.text
    assert r.json()["result"] == {"ok": True} and alice.controls == ["resume"]
    assert (await authed.get("/api/agents/alice/spend")).json()["status"] == "online"
    r = await authed.post("/api/agents/alice/resume")  # not parked: nothing to lift
    assert r.status_code == 201 and r.json()["result"] == {"ok": False}
    r = await authed.post("/api/agents/bob/resume")  # no harness answers
    assert r.status_code >= 400
    assert (await authed.post("/api/agents/alice/resume", headers={"X-CSRF-Token": "wrong"})).status_code == 403
