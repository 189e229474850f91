"""End-to-end with the REAL hive-broker: real claude CLI, simulator, nats-server.

- a message wakes alice, who sends to bob;
- non-message wakes: a due reminder and an answered question wake alice (turns
  with wake_from reminder / answer);
- the manager-only MCP tools: manager's request_spawn lands as a pending spawn
  approval; alice has no such tool (the CLI refuses it);
- kill -9 of the harness process mid-turn: the broker redelivers to the new
  instance, the message is handled once; that process's /metrics carries the
  turn's exact counters and passes `promtool check metrics`.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from hive_harness.simmodel import SimModel, Step
from hivewire import subjects
from hivewire.service import HiveClient, MicroService
from hivewire.wire import broker as wb
from hivewire.wire import ops
from hivewire.wire.agent import HistoryRequest
from tests.support.claude import MODEL_200K, pin_model
from tests.support.procs import ServiceProcess, wait_for

pytestmark = pytest.mark.e2e

MANAGER_TOOLS = ("request_init_config", "request_apply", "request_spawn", "kill", "start", "restart")


async def inbox(client: HiveClient, agent: str) -> list[wb.Message]:
    r = await client.request(ops.MESSAGES_LIST, wb.MessagesListRequest(agent=agent, limit=200))
    return r.messages


async def acked(client: HiveClient, mid: str) -> bool:
    return any(m.id == mid and m.acked_at is not None for m in await inbox(client, "alice"))


async def op_send(client: HiveClient, to: str, body: str) -> str:
    return (await client.request(ops.BROKER_SEND, wb.SendRequest(to=to, body=body), agent="operator")).id


async def history(client: HiveClient, agent: str) -> list[Any]:
    hist = await client.request(ops.CTL_HISTORY, HistoryRequest(limit=1000), agent=agent)
    return list(reversed(hist.events))


def tools_offered(sim: SimModel, text: str) -> set[str]:
    """Tool names in the CLI's main requests that mention `text`."""
    return {t["name"] for r in sim.script.main_requests() if text in json.dumps(r.body)
            for t in (r.body or {}).get("tools", [])}


async def test_real_broker_message_wakes_alice_who_sends_to_bob(
    real_broker: MicroService, sim: SimModel, harness_factory: Any, client: HiveClient
) -> None:
    sim.script.add(Step(kind="tool_use", tool_name="mcp__hive__send",
                        tool_input={"to": "bob", "body": "hi bob, via the real broker"}, match="greet bob now"))
    alice = await harness_factory("alice")
    sent = await op_send(client, "alice", "greet bob now")

    async def bob_inbox() -> list[wb.Message]:
        return [m for m in await inbox(client, "bob") if m.sender == "alice" and m.to == "bob"]

    msgs = await wait_for(bob_inbox, timeout=90)
    assert msgs[0].body == "hi bob, via the real broker"
    await wait_for(lambda: acked(client, sent), timeout=60)
    rows = list(reversed(await alice.stats.last(10)))
    assert [(r.wake_from, r.result_kind) for r in rows] == [("operator", "ok")]  # handled once


async def test_due_reminder_and_answered_question_wake_alice(
    real_broker: MicroService, sim: SimModel, harness_factory: Any, client: HiveClient
) -> None:
    # alice's first turn sets a reminder (due in 1 s), then asks the operator a question
    sim.script.add(
        Step(kind="tool_use", tool_name="mcp__hive__remind", tool_input={"body": "water the plants", "in_s": 1},
             match="plan your day"),
        Step(kind="tool_use", tool_name="mcp__hive__ask",
             tool_input={"question": "tea or coffee?", "options": ["tea", "coffee"]}, match="reminder_id"),
    )
    alice = await harness_factory("alice")
    first = await op_send(client, "alice", "plan your day")
    await wait_for(lambda: acked(client, first), timeout=90)

    async def rows() -> list[Any]:
        return list(reversed(await alice.stats.last(10)))

    async def reminder_turn() -> list[Any]:
        return [r for r in await rows() if r.wake_from == "reminder"]

    got = await wait_for(reminder_turn, timeout=60)
    assert got[0].result_kind == "ok"
    q = await client.request(ops.QUESTIONS_LIST, wb.QuestionsListRequest())
    asked = [x for x in q.questions if x.asker == "alice" and x.question == "tea or coffee?"]
    assert len(asked) == 1 and asked[0].options == ["tea", "coffee"]
    await client.request(ops.QUESTIONS_ANSWER, wb.OperatorAnswerRequest(question_id=asked[0].question_id, answer="tea"))

    async def answer_turn() -> list[Any]:
        return [r for r in await rows() if r.wake_from == "answer"]

    got = await wait_for(answer_turn, timeout=60)
    assert got[0].result_kind == "ok"
    assert [r.wake_from for r in await rows()] == ["operator", "reminder", "answer"]
    starts = {e.payload["wake_from"]: e.payload["prompt"] for e in await history(client, "alice")
              if e.kind == "turn_start"}
    assert starts["reminder"].startswith("[wake: reminder ") and "water the plants" in starts["reminder"]
    assert "mcp__hive__send" not in starts["reminder"]  # no "reply to yourself" hint
    assert starts["answer"].startswith(f"[wake: answer to question {asked[0].question_id} from operator")
    assert "tea" in starts["answer"]

    async def all_acked() -> bool:
        msgs = [m for m in await inbox(client, "alice") if m.to == "alice"]
        return len(msgs) == 3 and all(m.acked_at is not None for m in msgs)

    await wait_for(all_acked, timeout=30)
    assert sorted(m.kind for m in await inbox(client, "alice") if m.to == "alice") == ["answer", "message", "reminder"]


async def test_manager_request_spawn_is_an_approval_and_alice_has_no_manager_tools(
    real_broker: MicroService, sim: SimModel, harness_factory: Any, client: HiveClient
) -> None:
    sim.script.add(
        Step(kind="tool_use", tool_name="mcp__hive__request_spawn", tool_input={"name": "carol"},
             match="please spawn carol"),
        Step(kind="tool_use", tool_name="mcp__hive__kill", tool_input={"name": "manager"}, match="approval_id"),
        Step(kind="tool_use", tool_name="mcp__hive__request_init_config", tool_input={"name": "carol"},
             match="approval_id"),
        Step(kind="tool_use", tool_name="mcp__hive__request_apply",
             tool_input={"agent": "alice", "commit_ref": "abc1234"}, match="approval_id"),
        Step(kind="tool_use", tool_name="mcp__hive__request_spawn", tool_input={"name": "dave"},
             match="alice wants dave"),
    )
    await harness_factory("manager")
    m1 = await op_send(client, "manager", "please spawn carol")

    async def spawn_pending() -> list[wb.Approval]:
        r = await client.request(ops.APPROVALS_LIST, wb.ApprovalsListRequest())
        return [a for a in r.approvals if a.kind == "spawn"]

    approvals = await wait_for(spawn_pending, timeout=90)
    assert [(a.agent, a.requested_by, a.status) for a in approvals] == [("carol", "manager", "pending")]

    async def manager_acked() -> bool:
        return any(m.id == m1 and m.acked_at is not None for m in await inbox(client, "manager"))

    await wait_for(manager_acked, timeout=60)
    results = [e.payload for e in await history(client, "manager") if e.kind == "tool_result"]
    assert any("approval_id" in p["text"] for p in results)
    assert any("error (forbidden)" in p["text"] for p in results)  # kill on itself: refused, no approval
    assert {f"mcp__hive__{t}" for t in MANAGER_TOOLS} <= tools_offered(sim, "please spawn carol")
    r = await client.request(ops.APPROVALS_LIST, wb.ApprovalsListRequest())
    assert sorted((a.kind, a.agent, a.commit_ref, a.requested_by) for a in r.approvals) == [
        ("apply_commit", "alice", "abc1234", "manager"), ("init_config", "carol", None, "manager"),
        ("spawn", "carol", None, "manager")]

    alice = await harness_factory("alice")
    m2 = await op_send(client, "alice", "alice wants dave")
    await wait_for(lambda: acked(client, m2), timeout=90)
    offered = tools_offered(sim, "alice wants dave")
    assert "mcp__hive__send" in offered
    assert not {f"mcp__hive__{t}" for t in MANAGER_TOOLS} & offered
    refused = [e.payload for e in await history(client, "alice") if e.kind == "tool_result"]
    assert refused and refused[0]["is_error"] and "No such tool available" in refused[0]["text"]
    assert [a.agent for a in await spawn_pending()] == ["carol"]  # no approval for dave
    assert json.loads((await alice.stats.last(1))[0].tool_calls_json) == {"mcp__hive__request_spawn": 1}


def _metrics_url(proc: ServiceProcess) -> str:
    m = re.search(r"http://[\d.]+:\d+/metrics", proc.log())
    assert m, proc.log()[-2000:]
    return m.group(0)


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


def _sample(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.mark.chaos
async def test_kill9_mid_turn_real_broker_redelivers_once_and_metrics(
    real_broker: MicroService, sim: SimModel, cli_env: dict[str, str], client: HiveClient, tmp_path: Path
) -> None:
    usage1 = {"input_tokens": 1234, "output_tokens": 56, "cache_read_input_tokens": 7000,
              "cache_creation_input_tokens": 89}
    usage2 = {"input_tokens": 11, "output_tokens": 22, "cache_read_input_tokens": 33, "cache_creation_input_tokens": 44}
    sim.script.add(
        Step(text="never finished", match="long task", delay_s=60),
        Step(kind="tool_use", tool_name="mcp__hive__whoami", match="redelivered after restart", usage=usage1),
        Step(text="handled after restart", match="redelivered after restart", usage=usage2),
    )
    env = {**cli_env, "HIVE_AGENT": "alice"}
    pin_model(Path(cli_env["HIVE_HOME"]), "alice", MODEL_200K)  # the CLI reports a 200000 window for it
    first = ServiceProcess("harness", env, tmp_path / "logs1").start()
    try:
        mid = await op_send(client, "alice", "long task")

        async def mid_turn() -> bool:
            return any(r.step is not None and r.step.match == "long task" for r in sim.script.requests)

        await wait_for(mid_turn, timeout=90)
        first.kill9()
    finally:
        first.stop()
    held = [m for m in await inbox(client, "alice") if m.id == mid]
    assert held[0].delivered_at is not None and held[0].acked_at is None  # in flight with the dead instance
    second = ServiceProcess("harness", env, tmp_path / "logs2").start()
    try:
        await wait_for(lambda: acked(client, mid), timeout=90)
        handled = [r for r in sim.script.requests if r.step is not None and r.step.kind == "tool_use"]
        assert len(handled) == 1  # the redelivered message was handled once
        msg = next(m for m in await inbox(client, "alice") if m.id == mid)
        assert msg.redelivered and msg.acked_at is not None

        # the second process ran exactly that one turn: its /metrics say so
        text = await asyncio.to_thread(_fetch, _metrics_url(second))
        assert _sample(text, "hive_harness_turns_total", '{result_kind="ok"}') == 1.0
        assert _sample(text, "hive_harness_turns_total", '{result_kind="failed"}') == 0.0
        for kind in usage1:
            assert _sample(text, "hive_harness_tokens_total", f'{{kind="{kind}"}}') == usage1[kind] + usage2[kind]
        assert _sample(text, "hive_harness_tool_calls_total", '{tool="mcp__hive__whoami"}') == 1.0
        assert _sample(text, "hive_harness_turn_duration_seconds_count") == 1.0
        assert _sample(text, "hive_harness_context_window_tokens") == 200000
        assert _sample(text, "hive_harness_ctx_tokens") == 11 + 33 + 44
        promtool = shutil.which("promtool") or shutil.which("/usr/bin/promtool")
        if promtool is None:
            pytest.skip("promtool is not installed")
        check = await asyncio.to_thread(subprocess.run, [promtool, "check", "metrics"], input=text.encode(),
                                        capture_output=True, timeout=30)
        assert check.returncode == 0, (check.stdout + check.stderr).decode()
    finally:
        second.stop()


async def test_first_recv_names_the_instance_so_the_first_heartbeat_keeps_it(
    real_broker: MicroService, client: HiveClient, settings: Any, nats_transport: Any
) -> None:
    """No CLI: the loop takes a message before the broker has seen this instance's
    heartbeat; when the heartbeat lands, the message stays with it (no double handling)."""
    from hive_harness.service import HarnessService
    from hivewire import codec

    mid = await op_send(client, "alice", "first come")
    svc = HarnessService(nats_transport, settings, "alice")  # not started: no heartbeat yet
    item = await svc.loop._next()
    assert item is not None and item.message is not None and item.message.id == mid
    await nats_transport.publish(subjects.presence("alice"), codec.encode(svc.presence()))

    async def instance_seen() -> bool:
        return getattr(real_broker, "_instances", {}).get("alice") == svc.instance

    await wait_for(instance_seen, timeout=10)
    msg = next(m for m in await inbox(client, "alice") if m.id == mid)
    assert msg.delivered_at is not None and not msg.redelivered  # still held by this instance
    again = await client.request(ops.BROKER_RECV, wb.RecvRequest(max=5, instance=svc.instance), agent="alice")
    assert again.messages == []
