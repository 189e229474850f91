"""Per-turn cost: parsed from the CLI's result, stored (tolerant migration), queued for the ledger;
the runaway breaker and the budget arithmetic of hive_harness.budget."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from hive_harness.budget import Guard, over
from hive_harness.bus import Bus
from hive_harness.store import TURN_COLUMNS, EventStore, TurnStatsStore
from hive_harness.streamjson import StreamParser
from hivewire.wire import broker as wb
from hivewire.wire.agent import TurnStats

DATA = Path(__file__).resolve().parent / "data"


def parse(name: str) -> StreamParser:
    p = StreamParser()
    for line in (DATA / f"{name}.jsonl").read_text().splitlines():
        p.feed(line)
    return p


def test_result_cost_total_and_per_model() -> None:
    s = parse("tool_turn").summary
    assert s.cost_usd == pytest.approx(0.009425)
    assert s.model_costs == {"claude-haiku-4-5-20251001": pytest.approx(0.009425)}
    assert parse("auth_failed").summary.cost_usd == 0.0  # total_cost_usd 0, modelUsage {}


@pytest.mark.parametrize("raw", ['"1"', "-3", "true", "null", '{"x": 1}'])
def test_untrusted_cost_values_become_zero(raw: str) -> None:
    p = StreamParser()
    p.feed(f'{{"type": "result", "total_cost_usd": {raw}, "modelUsage": {{"m": {{"costUSD": {raw}}}}}}}')
    assert p.summary.cost_usd == 0.0 and p.summary.model_costs == {}


def row(**kw: object) -> TurnStats:
    base: dict[str, object] = dict(agent="alice", model="haiku", wake_from="bob", result_kind="ok", started_at=1.0,
                                   ended_at=2.0, duration_ms=1000)
    return TurnStats(**{**base, **kw})  # type: ignore[arg-type]


async def test_version1_file_gains_cost_columns_keeps_rows_and_queues_new_rows(tmp_path: Path) -> None:
    path = tmp_path / "turn-stats.sqlite"
    conn = sqlite3.connect(path)  # a file as v1 left it: no cost, no turn id, no outbox
    old = {k: v for k, v in TURN_COLUMNS.items() if k not in ("cost_usd", "model_costs_json", "turn_id")}
    conn.execute("CREATE TABLE turn_stats (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                 + ", ".join(f"{k} {v}" for k, v in old.items()) + ")")
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL)")
    conn.execute("INSERT INTO schema_version VALUES (1, 'turn_stats', 0)")
    conn.execute("INSERT INTO turn_stats(agent, model, input_tokens) VALUES ('alice', 'haiku', 7)")
    conn.commit()
    conn.close()
    store = TurnStatsStore(path)
    await store.open()
    await store.record(row(cost_usd=0.25, model_costs={"haiku": 0.2, "sonnet": 0.05}, turn_id="t1"))
    new, old_row = await store.last(2)
    assert (new.cost_usd, new.model_costs, new.turn_id) == (0.25, {"haiku": 0.2, "sonnet": 0.05}, "t1")
    assert (old_row.cost_usd, old_row.turn_id, old_row.input_tokens) == (0.0, "", 7)
    assert store.db is not None
    queued = await store.db.read(lambda c: c.execute("SELECT turn_id, payload FROM ledger_outbox").fetchall())
    assert [(r["turn_id"], json.loads(r["payload"])["cost_usd"]) for r in queued] == [("t1", 0.25)]
    await store.close()


def test_over_is_at_or_above_either_limit() -> None:
    assert over(wb.Budget(usd=1.0), 1.0, 0) and not over(wb.Budget(usd=1.0), 0.99, 10**9)
    assert over(wb.Budget(tokens=100), 0.0, 100) and not over(wb.Budget(tokens=100), 5.0, 99)
    assert over(wb.Budget(usd=1.0, tokens=100), 0.0, 100)


async def make_guard(tmp_path: Path) -> tuple[Guard, Bus]:
    events = EventStore(tmp_path / "events.sqlite")
    await events.open()

    async def publish(op: object, payload: object, **params: str) -> None:
        return None

    bus = Bus("alice", tmp_path, events, publish, None)
    return Guard(bus, None, None, asyncio.Event()), bus  # type: ignore[arg-type]


async def test_failed_turns_in_a_row_trip_the_breaker_which_survives_a_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_RUNAWAY_FAILED_TURNS", "3")
    guard, bus = await make_guard(tmp_path)
    for kind in ("failed", "failed", "ok", "failed", "failed"):
        guard.turn_done(row(result_kind=kind))
    assert guard.runaway is None  # the ok turn broke the streak
    guard.turn_done(row(result_kind="failed"))
    assert guard.runaway is not None and "3 failed turns in a row" in guard.runaway
    assert await guard.blocked() and bus.status == "runaway" and bus.presence_reason == "runaway"
    again, _ = await make_guard(tmp_path)  # a new harness instance, same state dir
    assert again.runaway == guard.runaway
    assert await again.resume() is True
    assert not (tmp_path / "runaway").exists() and again.runaway is None


async def test_turns_per_hour_trip_the_breaker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_RUNAWAY_TURNS_PER_HOUR", "4")
    guard, _ = await make_guard(tmp_path)
    for t in (0.0, 50.0, 3700.0, 3701.0, 3702.0):  # the first two fall out of the hour
        guard.turn_done(row(ended_at=t))
    assert guard.runaway is None
    guard.turn_done(row(ended_at=3703.0))
    assert guard.runaway is not None and "4 turns in the last hour" in guard.runaway
