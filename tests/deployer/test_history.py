"""hive.deployer.history / turn_stats: a dead agent's last words from its files on the host (issue 23)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hive_harness.store import EventStore, TurnStatsStore
from hivewire.errors import HiveError
from hivewire.wire import ops
from hivewire.wire.agent import LiveEvent, TurnStats
from hivewire.wire.deployer import AgentHistoryRequest, TurnStatsRequest
from tests.deployer.conftest import Env


async def harness_files(state: Path, n: int = 5) -> None:
    """A real events.sqlite and turn-stats.sqlite, written by the harness's own stores."""
    events = EventStore(state / "events.sqlite")
    assert await events.open()
    await events.append_many([LiveEvent(id=i, ts=float(i), kind="note", payload={"text": f"note {i}"})
                              for i in range(1, n + 1)])
    await events.close()
    turns = TurnStatsStore(state / "turn-stats.sqlite")
    await turns.open()
    for i in range(3):
        await turns.record(TurnStats(agent="alice", model="haiku", wake_from="bob", result_kind="ok",
                                     started_at=float(i), ended_at=i + 1.0, duration_ms=1000, last_input_tokens=100 * i,
                                     context_window=200_000))
    await turns.close()


def files(state: Path) -> set[str]:
    return {p.name for p in state.iterdir()}


async def test_history_and_turns_of_a_stopped_agent_read_only(deployer: Env) -> None:
    state = deployer.home / "agents" / "alice" / "state"
    state.mkdir(parents=True)
    await harness_files(state)
    before = {p.name: p.stat().st_mtime_ns for p in state.iterdir() if p.suffix == ".sqlite"}

    reply = await deployer.call(ops.DEPLOYER_HISTORY, AgentHistoryRequest(name="alice", limit=3))
    assert [e.id for e in reply.events] == [5, 4, 3]  # newest first, like ctl.history
    assert reply.events[0].payload == {"text": "note 5"} and reply.events[0].kind == "note"
    page = await deployer.call(ops.DEPLOYER_HISTORY, AgentHistoryRequest(name="alice", limit=10, before_id=3))
    assert [e.id for e in page.events] == [2, 1]

    turns = await deployer.call(ops.DEPLOYER_TURN_STATS, TurnStatsRequest(name="alice", limit=2))
    assert [t.last_input_tokens for t in turns.turns] == [100, 200]  # the newest two, oldest first
    assert turns.turns[-1].model == "haiku" and turns.turns[-1].context_window == 200_000
    after = {p.name: p.stat().st_mtime_ns for p in state.iterdir() if p.suffix == ".sqlite"}
    assert after == before  # nothing written


async def test_missing_files_are_not_created_and_bad_names_refused(deployer: Env) -> None:
    state = deployer.home / "agents" / "bob" / "state"
    state.mkdir(parents=True)
    with pytest.raises(HiveError) as e:
        await deployer.call(ops.DEPLOYER_HISTORY, AgentHistoryRequest(name="bob"))
    assert e.value.code == "not_found"
    with pytest.raises(HiveError) as e:
        await deployer.call(ops.DEPLOYER_TURN_STATS, TurnStatsRequest(name="bob"))
    assert e.value.code == "not_found"
    assert files(state) == set()  # no sqlite file (or -wal/-shm) appeared
    with pytest.raises(HiveError) as e:
        await deployer.call(ops.DEPLOYER_HISTORY, AgentHistoryRequest(name="nobody"))
    assert e.value.code == "not_found"
    for bad in ("../bob", "Bob", "bob/state", "bob\n"):
        with pytest.raises(HiveError) as e:
            await deployer.call(ops.DEPLOYER_HISTORY, AgentHistoryRequest(name=bad))
        assert e.value.code == "bad_name", bad


async def test_a_planted_symlink_is_not_followed(deployer: Env, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    await harness_files(elsewhere)
    state = deployer.home / "agents" / "carol" / "state"
    state.mkdir(parents=True)
    os.symlink(elsewhere / "events.sqlite", state / "events.sqlite")  # the agent can write its state dir
    with pytest.raises(HiveError) as e:
        await deployer.call(ops.DEPLOYER_HISTORY, AgentHistoryRequest(name="carol"))
    assert e.value.code == "forbidden"
    os.symlink(elsewhere, deployer.home / "agents" / "dave")  # a whole agent dir that points elsewhere
    with pytest.raises(HiveError) as e:
        await deployer.call(ops.DEPLOYER_TURN_STATS, TurnStatsRequest(name="dave"))
    assert e.value.code == "forbidden"
