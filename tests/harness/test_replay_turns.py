"""The turn loop against a RECORDED agent CLI (data/replay_cli.py), no npm needed.

The recordings in data/ are the real `claude` CLI's stdout; replay_cli.py plays them
back inside the harness's real bubblewrap sandbox, with the real broker in-process and
a real nats-server. What is checked is the harness's logic on a known CLI output: the
turn rows and their exact token figures, the ack (handled once), parking on a 429 and
the retry, the history. The same paths against the live CLI are in test_harness_e2e.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hivewire.service import HiveClient
from hivewire.wire import ops
from hivewire.wire.agent import HistoryRequest
from hivewire.wire.common import Empty
from tests.harness.conftest import DATA
from tests.harness.test_harness_e2e import _acked, send_op, turn_rows
from tests.support.procs import wait_for

REPLAY = DATA / "replay_cli.py"


@pytest.fixture
def cli_env(hive_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Harnesses run the recorded CLI (this overrides conftest's real-CLI `cli_env`)."""
    home = tmp_path / "userhome"
    home.mkdir()
    env = {"HIVE_AGENT_CMD": str(REPLAY), "ANTHROPIC_API_KEY": "sk-replay", "HOME": str(home),
           "HIVE_RATE_LIMIT_PARK_S": "2", "HIVE_WAKE_POLL_S": "1", "HIVE_HEARTBEAT_S": "0.5",
           "HIVE_ALLOWED_TOOLS": ""}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    return env


async def _history(client: HiveClient) -> list[Any]:
    hist = await client.request(ops.CTL_HISTORY, HistoryRequest(limit=500), agent="alice")
    return list(reversed(hist.events))  # oldest first


async def test_recorded_tool_turn_is_one_ok_row_with_its_figures_and_one_ack(
        broker: Any, harness_factory: Any, client: HiveClient) -> None:
    alice = await harness_factory("alice")
    assert alice.cli.sandbox.confined  # the replayer runs where the real CLI would
    mid = await send_op(client, "alice", "replay:tool_turn please")
    assert mid.isdecimal()
    await wait_for(lambda: _acked(broker, mid), timeout=60)
    assert await broker.handled_once(mid)
    [r] = await turn_rows(alice)
    assert (r.result_kind, r.wake_from) == ("ok", "operator")
    assert json.loads(r.tool_calls_json) == {"Read": 1}
    # the recording's figures: ctx = the last inference, cost = cumulative over both
    assert (r.last_input_tokens, r.last_cache_read_input_tokens, r.last_cache_creation_input_tokens) == (
        300, 31000, 700)
    assert (r.input_tokens, r.cache_read_input_tokens, r.cache_creation_input_tokens, r.output_tokens) == (
        1500, 61000, 1200, 65)
    assert r.cost_usd == pytest.approx(0.009425)
    events = await _history(client)
    kinds = [e.kind for e in events]
    assert kinds.index("turn_start") < kinds.index("tool_use") < kinds.index("tool_result") < kinds.index(
        "assistant_text") < kinds.index("turn_end")
    assert next(e for e in events if e.kind == "tool_use").payload["summary"] == "Read /etc/hostname"
    assert next(e for e in events if e.kind == "assistant_text").payload["text"] == "all done"
    st = await client.request(ops.CTL_STATE, Empty(), agent="alice")
    assert st.status == "online" and st.turn_state == "idle" and st.ctx_tokens == 300 + 31000 + 700


async def test_recorded_429_parks_then_the_retry_is_handled_once(
        broker: Any, harness_factory: Any, client: HiveClient) -> None:
    alice = await harness_factory("alice")
    mid = await send_op(client, "alice", "replay:rate_limited,tool_turn work")
    await wait_for(lambda: _acked(broker, mid), timeout=60)
    assert [r.result_kind for r in await turn_rows(alice)] == ["rate_limited", "ok"]
    assert await broker.acked(mid) and [m.id for m in await broker.inbox("alice")] == [mid]
    events = await _history(client)
    statuses = [e.payload.get("status") for e in events if e.kind == "status_changed"]
    assert statuses[:3] == ["online", "rate_limited", "online"]
    st = await client.request(ops.CTL_STATE, Empty(), agent="alice")
    assert st.status == "online" and not st.rate_limited


async def test_recorded_auth_failure_holds_the_message(
        broker: Any, harness_factory: Any, client: HiveClient) -> None:
    alice = await harness_factory("alice")
    mid = await send_op(client, "alice", "replay:auth_failed hello")

    async def needs_login() -> bool:
        st = await client.request(ops.CTL_STATE, Empty(), agent="alice")
        return st.status == "needs_login"

    await wait_for(needs_login, timeout=60)
    assert alice.presence().reason == "needs_login"
    assert not await broker.acked(mid)  # held for after the login, not dropped
