"""End-to-end: the real claude CLI, the Messages-API simulator, a real nats-server.

The broker here is the real hive-broker in-process (conftest.py's `broker`, a
view of its store); more tests against it (wakes, manager tools, kill -9
redelivery, /metrics) are in test_harness_real_broker.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from hive_harness.simmodel import SimModel, Step
from hivewire import subjects
from hivewire.service import HiveClient
from hivewire.wire import ops
from hivewire.wire.agent import HistoryRequest, LoginRequest, ModelRequest
from hivewire.wire.broker import SendRequest
from hivewire.wire.common import Empty
from tests.support.claude import MODEL_200K
from tests.support.procs import wait_for

pytestmark = pytest.mark.e2e


async def turn_rows(svc: Any, n: int = 50) -> list[Any]:
    return list(reversed(await svc.stats.last(n)))


async def test_message_wakes_alice_who_sends_to_bob(broker: Any, sim: SimModel, harness_factory: Any,
                                                    client: HiveClient) -> None:
    sim.script.add(Step(kind="tool_use", tool_name="mcp__hive__send",
                        tool_input={"to": "bob", "body": "hello bob, from the script"}, match="please greet bob"))
    alice = await harness_factory("alice")
    await client.request(ops.BROKER_SEND, SendRequest(to="alice", body="please greet bob"), agent="operator")

    async def bob_has_it() -> bool:
        return any(m.sender == "alice" for m in await broker.inbox("bob"))

    await wait_for(bob_has_it, timeout=90)
    msg = next(m for m in await broker.inbox("bob") if m.sender == "alice")
    assert msg.body == "hello bob, from the script"
    # alice's message is acked only after her turn succeeded
    alice_msg = (await broker.inbox("alice"))[0]
    assert alice_msg.id.isdecimal()  # the broker's id
    await wait_for(lambda: _acked(broker, alice_msg.id), timeout=60)
    rows = await wait_for(lambda: turn_rows(alice), timeout=30)
    assert rows[0].result_kind == "ok"
    assert rows[0].wake_from == "operator"
    assert json.loads(rows[0].tool_calls_json) == {"mcp__hive__send": 1}
    hist = await client.request(ops.CTL_HISTORY, HistoryRequest(limit=500), agent="alice")
    kinds = [e.kind for e in hist.events]
    assert "turn_start" in kinds and "turn_end" in kinds and "tool_use" in kinds and "tool_result" in kinds
    tool_use = next(e for e in hist.events if e.kind == "tool_use")
    assert tool_use.payload["summary"] == "send → bob: hello bob, from the script"
    state = await client.request(ops.CTL_STATE, Empty(), agent="alice")
    assert state.status == "online" and state.turn_state == "idle" and state.model == "haiku"


def _metric_values() -> dict[str, float]:
    g = REGISTRY.get_sample_value
    out = {f"turns_{k}": g("hive_harness_turns_total", {"result_kind": k}) or 0.0
           for k in ("ok", "failed", "prompt_too_long", "rate_limited", "cancelled")}
    for k in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
        out[f"tokens_{k}"] = g("hive_harness_tokens_total", {"kind": k}) or 0.0
    for t in ("mcp__hive__whoami", "other"):
        out[f"tool_{t}"] = g("hive_harness_tool_calls_total", {"tool": t}) or 0.0
    out["turn_seconds_count"] = g("hive_harness_turn_duration_seconds_count") or 0.0
    return out


async def _acked(broker: Any, mid: str) -> bool:
    return bool(await broker.acked(mid))


def _state_dir(home: Path, agent: str) -> Path:
    return home / "agents" / agent / "state"


async def send_op(client: HiveClient, to: str, body: str) -> str:
    reply = await client.request(ops.BROKER_SEND, SendRequest(to=to, body=body), agent="operator")
    return reply.id


async def test_turn_stats_ctx_cost_and_window_exact(broker: Any, sim: SimModel, harness_factory: Any,
                                                    client: HiveClient) -> None:
    sim.script.add(
        Step(kind="tool_use", tool_name="mcp__hive__whoami", match="count my tokens",
             usage={"input_tokens": 1200, "output_tokens": 40, "cache_read_input_tokens": 30000,
                    "cache_creation_input_tokens": 500}),
        Step(text="counted", match="tool_result",
             usage={"input_tokens": 300, "output_tokens": 25, "cache_read_input_tokens": 31000,
                    "cache_creation_input_tokens": 700}),
    )
    alice = await harness_factory("alice", model=MODEL_200K)
    before = _metric_values()
    await send_op(client, "alice", "count my tokens")
    rows = await wait_for(lambda: turn_rows(alice), timeout=90)
    r = rows[0]
    assert r.result_kind == "ok"
    # the process-wide counters moved by exactly this turn (deltas: other tests share the registry)
    delta = {k: v - before[k] for k, v in _metric_values().items()}
    assert delta == {
        "turns_ok": 1, "turns_failed": 0, "turns_prompt_too_long": 0, "turns_rate_limited": 0,
        "turns_cancelled": 0, "tokens_input_tokens": 1500, "tokens_output_tokens": 65,
        "tokens_cache_read_input_tokens": 61000, "tokens_cache_creation_input_tokens": 1200,
        "tool_mcp__hive__whoami": 1, "tool_other": 0, "turn_seconds_count": 1,
    }
    assert REGISTRY.get_sample_value("hive_harness_ctx_tokens") == 300 + 31000 + 700
    assert REGISTRY.get_sample_value("hive_harness_context_window_tokens") == 200000
    # ctx parts = the last inference; cost parts = cumulative over both inferences
    last = (r.last_input_tokens, r.last_cache_read_input_tokens, r.last_cache_creation_input_tokens)
    assert last == (300, 31000, 700)
    assert (r.input_tokens, r.cache_read_input_tokens, r.cache_creation_input_tokens) == (1500, 61000, 1200)
    assert r.output_tokens == 65
    assert r.context_window == 200000  # from modelUsage.<model>.contextWindow
    state = await client.request(ops.CTL_STATE, Empty(), agent="alice")
    assert state.ctx_tokens == 300 + 31000 + 700
    assert state.cost_tokens == 1500 + 61000 + 1200 + 65
    assert state.context_window == 200000


async def test_crossing_75_percent_compacts(broker: Any, sim: SimModel, harness_factory: Any,
                                            client: HiveClient) -> None:
    sim.script.add(Step(text="big answer", match="grow the context",
                        usage={"input_tokens": 2000, "output_tokens": 10, "cache_read_input_tokens": 158000,
                               "cache_creation_input_tokens": 0}))
    alice = await harness_factory("alice", model=MODEL_200K)
    first = await send_op(client, "alice", "warm up")  # /compact needs more than one exchange
    await wait_for(lambda: _acked(broker, first), timeout=60)
    await send_op(client, "alice", "grow the context")

    async def compacted() -> list[Any]:
        hist = await client.request(ops.CTL_HISTORY, HistoryRequest(limit=500), agent="alice")
        return [e for e in hist.events if e.kind == "note" and e.payload.get("text") == "compaction done (proactive)"]

    await wait_for(compacted, timeout=60)
    hist = await client.request(ops.CTL_HISTORY, HistoryRequest(limit=500), agent="alice")
    states = [e.payload["state"] for e in reversed(hist.events) if e.kind == "turn_state_changed"]
    assert "compacting" in states
    assert alice.bus.ctx is not None and alice.bus.ctx < 0.75 * 200000
    assert any(r.body and "/compact" not in json.dumps(r.body) for r in sim.script.requests)


async def test_429_rate_limited_sentinel_park_and_retry_once(broker: Any, sim: SimModel, harness_factory: Any,
                                                             client: HiveClient, hive_home: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_CLAUDE_MAX_RETRIES", "1")
    monkeypatch.setenv("HIVE_RATE_LIMIT_PARK_S", "4")
    sim.script.add(Step(kind="error", status=429, match="limited work"),
                   Step(kind="error", status=429, match="limited work"))
    alice = await harness_factory("alice")
    mid = await send_op(client, "alice", "limited work")
    sentinel = _state_dir(hive_home, "alice") / "rate-limited"

    async def limited() -> bool:
        return sentinel.exists() and alice.bus.rate_limited

    await wait_for(limited, timeout=60, interval=0.01)
    presence = alice.presence()
    assert presence.state == "waiting" and presence.reason == "rate_limit"
    assert not await broker.acked(mid)  # parked, not acked
    await wait_for(lambda: _acked(broker, mid), timeout=60)
    assert await broker.handled_once(mid)
    assert not sentinel.exists()
    rows = await turn_rows(alice)
    assert [r.result_kind for r in rows] == ["rate_limited", "ok"]
    st = await client.request(ops.CTL_STATE, Empty(), agent="alice")
    assert st.status == "online" and not st.rate_limited
    hist = await client.request(ops.CTL_HISTORY, HistoryRequest(limit=500), agent="alice")
    statuses = [e.payload.get("status") for e in reversed(hist.events) if e.kind == "status_changed"]
    assert statuses[:3] == ["online", "rate_limited", "online"]  # the instance's announcement, then the changes


async def test_no_credentials_needs_login(broker: Any, sim: SimModel, harness_factory: Any, client: HiveClient,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")  # the model endpoint stays configured: the sandbox lets only it out
    alice = await harness_factory("alice")
    mid = await send_op(client, "alice", "are you there")

    async def needs_login() -> bool:
        st = await client.request(ops.CTL_STATE, Empty(), agent="alice")
        return st.status == "needs_login"

    await wait_for(needs_login, timeout=60)
    assert alice.presence().state == "waiting" and alice.presence().reason == "needs_login"
    st = await client.request(ops.CTL_STATE, Empty(), agent="alice")
    assert st.login_reason == "no_credentials"
    assert not await broker.acked(mid)
    # the CLI's login over pipes shows the URL it prints, and can be cancelled
    st = await client.request(ops.CTL_LOGIN, LoginRequest(action="start"), timeout=40, agent="alice")
    assert st.login_url and st.login_url.startswith("https://")
    await client.request(ops.CTL_LOGIN, LoginRequest(action="cancel"), agent="alice")
    # a wrong code: the CLI says why and exits; the reply carries it and the process is gone
    await client.request(ops.CTL_LOGIN, LoginRequest(action="start"), timeout=40, agent="alice")
    proc = alice.login.proc
    st = await client.request(ops.CTL_LOGIN, LoginRequest(action="submit", code="wrong-code#state"), timeout=20,
                              agent="alice")
    assert st.login_error and alice.login is None and proc.returncode not in (None, 0)
    assert st.status == "needs_login"
    # credentials appear (an API key): online again, and the held message is handled
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-simulator")
    await wait_for(lambda: _acked(broker, mid), timeout=60)
    st = await client.request(ops.CTL_STATE, Empty(), agent="alice")
    assert st.status == "online"


async def test_cancel_interrupts_a_slow_turn(broker: Any, sim: SimModel, harness_factory: Any,
                                             client: HiveClient) -> None:
    sim.script.add(Step(text="too late", match="slow job", delay_s=60))
    alice = await harness_factory("alice")
    await send_op(client, "alice", "slow job")

    async def thinking() -> bool:
        return alice.bus.turn_state == "thinking" and any(
            r.step is not None and r.step.match == "slow job" for r in sim.script.requests)

    await wait_for(thinking, timeout=60)
    reply = await client.request(ops.CTL_CANCEL, Empty(), agent="alice")
    assert reply.ok is True
    rows = await wait_for(lambda: turn_rows(alice), timeout=30)
    assert rows[0].result_kind == "cancelled"
    assert alice.bus.turn_state == "idle"


async def test_model_switch_survives_restart(broker: Any, sim: SimModel, harness_factory: Any,
                                             client: HiveClient, hive_home: Path) -> None:
    alice = await harness_factory("alice")
    st = await client.request(ops.CTL_MODEL, ModelRequest(model="sonnet"), agent="alice")
    assert st.model == "sonnet"
    bad = await client.transport.request(subjects.ctl("alice", "model"), b'{"model": "x; rm -rf /"}', 5)
    assert b"bad_request" in bad.data
    await harness_factory.stop(alice)
    assert (_state_dir(hive_home, "alice") / "model").read_text().strip() == "sonnet"
    alice2 = await harness_factory("alice")
    assert alice2.instance != alice.instance
    st = await client.request(ops.CTL_STATE, Empty(), agent="alice")
    assert st.model == "sonnet"
    await send_op(client, "alice", "which model")
    await wait_for(lambda: turn_rows(alice2), timeout=90)
    main = [r for r in sim.script.main_requests() if "which model" in json.dumps(r.body)]
    assert main and "sonnet" in main[0].body["model"]  # type: ignore[index]
