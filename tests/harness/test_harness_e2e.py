"""End-to-end: the real claude CLI, the Messages-API simulator, a real nats-server.

The broker here is the FAKE broker of conftest.py until hive-broker lands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hive_harness.simmodel import SimModel, Step
from hivewire import subjects
from hivewire.service import HiveClient
from hivewire.wire.agent import AgentState, HistoryReply, HistoryRequest
from tests.support.procs import wait_for

pytestmark = pytest.mark.e2e


async def turn_rows(svc: Any, n: int = 50) -> list[Any]:
    return list(reversed(await svc.stats.last(n)))


async def test_message_wakes_alice_who_sends_to_bob(broker: Any, sim: SimModel, harness_factory: Any,
                                                    client: HiveClient) -> None:
    sim.script.add(Step(kind="tool_use", tool_name="mcp__hive__send",
                        tool_input={"to": "bob", "body": "hello bob, from the script"}, match="please greet bob"))
    alice = await harness_factory("alice")
    await client.call(subjects.broker("operator", "send"),
                      {"to": "alice", "body": "please greet bob"}, dict)

    async def bob_has_it() -> bool:
        return any(m.sender == "alice" for m in broker.inbox.get("bob", []))

    await wait_for(bob_has_it, timeout=90)
    msg = next(m for m in broker.inbox["bob"] if m.sender == "alice")
    assert msg.body == "hello bob, from the script"
    # alice's message is acked only after her turn succeeded
    alice_msg = broker.inbox["alice"][0]
    await wait_for(lambda: _acked(broker, alice_msg.id), timeout=60)
    rows = await wait_for(lambda: turn_rows(alice), timeout=30)
    assert rows[0].result_kind == "ok"
    assert rows[0].wake_from == "operator"
    assert json.loads(rows[0].tool_calls_json) == {"mcp__hive__send": 1}
    hist = await client.call(subjects.ctl("alice", "history"), HistoryRequest(limit=500), HistoryReply)
    kinds = [e.kind for e in hist.events]
    assert "turn_start" in kinds and "turn_end" in kinds and "tool_use" in kinds and "tool_result" in kinds
    tool_use = next(e for e in hist.events if e.kind == "tool_use")
    assert tool_use.payload["summary"] == "send → bob: hello bob, from the script"
    state = await client.call(subjects.ctl("alice", "state"), {}, AgentState)
    assert state.status == "online" and state.turn_state == "idle" and state.model == "haiku"


async def _acked(broker: Any, mid: str) -> bool:
    return mid in broker.acked


def _state_dir(home: Path, agent: str) -> Path:
    return home / "agents" / agent / "state"
