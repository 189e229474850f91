"""Context management end to end: the real claude CLI against the simulator (the real broker in-process).

- reactive compaction: the model answers "prompt is too long" → `/compact` → the
  turn is retried once; rows prompt_too_long then ok; the message is acked once;
- the automatic fresh session: ctx ≥ 50% and idle longer than the prompt cache
  (`HIVE_IDLE_RESET_S`, short here) → the next turn runs without --continue.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from prometheus_client import REGISTRY

from hive_harness.simmodel import SimModel, Step
from hivewire.service import HiveClient
from hivewire.wire import ops
from hivewire.wire.agent import HistoryRequest
from tests.harness.test_harness_e2e import _acked, send_op, turn_rows
from tests.support.claude import MODEL_200K
from tests.support.procs import wait_for

pytestmark = pytest.mark.e2e


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _history(client: HiveClient, agent: str) -> list[Any]:
    hist = await client.request(ops.CTL_HISTORY, HistoryRequest(limit=1000), agent=agent)
    return list(reversed(hist.events))  # oldest first


def _main_with(sim: SimModel, text: str) -> list[str]:
    """Raw bodies of the CLI's main requests (with tools) that mention `text`."""
    return [b for b in (json.dumps(r.body) for r in sim.script.main_requests()) if text in b]


async def test_prompt_too_long_compacts_and_retries_once(broker: Any, sim: SimModel, harness_factory: Any,
                                                         client: HiveClient) -> None:
    sim.script.add(Step(kind="prompt_too_long", match="an enormous request"))
    alice = await harness_factory("alice", model=MODEL_200K)
    first = await send_op(client, "alice", "warm up first")  # /compact needs an exchange to summarise
    await wait_for(lambda: _acked(broker, first), timeout=60)
    reactive_before = _metric("hive_harness_compactions_total", trigger="reactive")
    mid = await send_op(client, "alice", "an enormous request")
    await wait_for(lambda: _acked(broker, mid), timeout=90)

    rows = await turn_rows(alice)
    assert await broker.handled_once(mid)  # acked after the retry; taken once, never redelivered
    # the simulator refused the first try and answered the retry
    refused = [r for r in sim.script.requests if r.step is not None and r.step.kind == "prompt_too_long"]
    assert len(refused) == 1
    assert len(_main_with(sim, "an enormous request")) >= 2
    events = await _history(client, "alice")
    if [r.result_kind for r in rows] == ["ok", "ok"]:
        # CLIs from 2.1.3xx compact a too-long session themselves and retry within the turn
        notes = [e.payload.get("text") or "" for e in events if e.kind == "note"]
        assert any(n.startswith("compacted (auto)") for n in notes)
        return
    assert [r.result_kind for r in rows] == ["ok", "prompt_too_long", "ok"]
    assert rows[1].wake_from == rows[2].wake_from == "operator"
    notes = [e.payload.get("text") for e in events if e.kind == "note"]
    i_start = notes.index("compacting (reactive)")
    assert "compaction done (reactive)" in notes[i_start:]
    states = [e.payload["state"] for e in events if e.kind == "turn_state_changed"]
    assert "compacting" in states
    # order: turn_end(prompt_too_long) → compaction → turn_start of the retry → turn_end(ok)
    seq = [(e.kind, e.payload.get("result_kind") or e.payload.get("text")) for e in events
           if e.kind in ("turn_end", "turn_start") or (e.kind == "note" and "reactive" in str(e.payload))]
    tail = seq[[k for k, _ in seq].index("turn_end", 2):]
    assert [k for k, _ in tail][:5] == ["turn_end", "note", "note", "turn_start", "turn_end"]
    assert tail[0][1] == "prompt_too_long" and tail[4][1] == "ok"
    assert _metric("hive_harness_compactions_total", trigger="reactive") == reactive_before + 1


async def test_idle_past_prompt_cache_at_half_window_starts_fresh_session(
    broker: Any, sim: SimModel, harness_factory: Any, client: HiveClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIVE_IDLE_RESET_S", "1.5")  # the prompt cache "lives" 1.5 s here
    # first turn leaves ctx at 110k of 200k: ≥ 50%, below the 75% compaction mark
    sim.script.add(Step(text="noted", match="first topic alpha",
                        usage={"input_tokens": 10000, "output_tokens": 10, "cache_read_input_tokens": 100000,
                               "cache_creation_input_tokens": 0}))
    alice = await harness_factory("alice", model=MODEL_200K)
    m1 = await send_op(client, "alice", "first topic alpha")
    await wait_for(lambda: _acked(broker, m1), timeout=60)
    assert alice.bus.ctx == 110000 and not alice.bus.new_session

    async def idle_long_enough() -> bool:  # waits on the harness's own clock, asserts nothing about time
        return time.time() - alice.loop.last_turn_end > alice.loop.idle_reset_s + 0.2

    await wait_for(idle_long_enough, timeout=30)
    m2 = await send_op(client, "alice", "second topic beta")
    await wait_for(lambda: _acked(broker, m2), timeout=60)
    # the second turn dropped --continue: its request carries no trace of the first conversation
    second = _main_with(sim, "second topic beta")
    assert second and all("first topic alpha" not in b for b in second)
    notes = [e.payload.get("text") for e in await _history(client, "alice") if e.kind == "note"]
    assert "idle past the prompt cache with ctx ≥ 50%: starting a fresh session" in notes
    assert "new session: this turn runs without --continue" in notes
    # one-shot: ctx is small again, so the next turn continues the (new) session
    m3 = await send_op(client, "alice", "third topic gamma")
    await wait_for(lambda: _acked(broker, m3), timeout=60)
    third = _main_with(sim, "third topic gamma")
    assert third and all("second topic beta" in b and "first topic alpha" not in b for b in third)
    assert [r.result_kind for r in await turn_rows(alice)] == ["ok", "ok", "ok"]


async def test_idle_below_half_window_keeps_the_session(broker: Any, sim: SimModel, harness_factory: Any,
                                                        client: HiveClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_IDLE_RESET_S", "0.5")
    alice = await harness_factory("alice", model=MODEL_200K)
    m1 = await send_op(client, "alice", "small talk one")
    await wait_for(lambda: _acked(broker, m1), timeout=60)
    assert alice.bus.ctx is not None and alice.bus.ctx < 0.5 * alice.bus.context_window

    async def idle_long_enough() -> bool:
        return time.time() - alice.loop.last_turn_end > alice.loop.idle_reset_s + 0.2

    await wait_for(idle_long_enough, timeout=30)
    m2 = await send_op(client, "alice", "small talk two")
    await wait_for(lambda: _acked(broker, m2), timeout=60)
    second = _main_with(sim, "small talk two")
    assert second and all("small talk one" in b for b in second)  # --continue kept


async def test_prompt_too_long_and_failed_compaction_retries_in_a_fresh_session(
    broker: Any, sim: SimModel, harness_factory: Any, client: HiveClient
) -> None:
    """/compact itself is refused (too long to summarise): the retry drops --continue instead."""
    sim.script.add(Step(kind="prompt_too_long", match="oversized opener"),
                   Step(kind="prompt_too_long", match="Please provide your summary based on the conversation"))
    alice = await harness_factory("alice", model=MODEL_200K)
    mid = await send_op(client, "alice", "oversized opener")
    await wait_for(lambda: _acked(broker, mid), timeout=90)
    assert [r.result_kind for r in await turn_rows(alice)] == ["prompt_too_long", "ok"]
    assert await broker.handled_once(mid)
    events = await _history(client, "alice")
    errors = [e.payload.get("kind") for e in events if e.kind == "error"]
    notes = [e.payload.get("text") for e in events if e.kind == "note"]
    assert "compact_failed" in errors
    assert "compaction failed: the retry starts a fresh session" in notes
    refused = [r for r in sim.script.requests if r.step is not None and r.step.kind == "prompt_too_long"]
    # the turn, then the /compact (CLIs from 2.1.3xx refuse to compact one exchange without asking)
    assert 1 <= len(refused) <= 2
    # the retry carries the wake once: a fresh session, not the failed one continued
    retry = sim.script.main_requests()[-1].body or {}
    users = [m for m in retry["messages"] if m.get("role") == "user"]  # newer CLIs add `system` ones
    assert len(users) == 1 and json.dumps(users).count("oversized opener") == 1
