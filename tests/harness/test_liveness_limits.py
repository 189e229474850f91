"""Today's CLI (the pin, or HIVE_TEST_CLAUDE_VERSION) against the simulator: the hive tools are
presented directly; working vs stalled vs waiting; usage limits park until they reset; a turn
ends at result + exit; an expired login is told from a missing one."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from hive_harness import tokens
from hive_harness.signals import jitter_s
from hive_harness.simmodel import SimModel, Step
from hivewire import codec, subjects
from hivewire.service import HiveClient
from hivewire.transport import Msg
from hivewire.wire import ops
from hivewire.wire.agent import AgentState, HistoryRequest, Presence
from hivewire.wire.common import Empty
from tests.harness.test_harness_e2e import _acked, send_op, turn_rows
from tests.support.procs import wait_for

pytestmark = pytest.mark.e2e


async def history(client: HiveClient, agent: str = "alice") -> list[Any]:
    hist = await client.request(ops.CTL_HISTORY, HistoryRequest(limit=1000), agent=agent)
    return list(reversed(hist.events))


async def presences(nats_transport: Any, agent: str = "alice") -> list[Presence]:
    seen: list[Presence] = []

    async def on(msg: Msg) -> None:
        seen.append(codec.decode(msg.data, Presence))

    await nats_transport.subscribe(subjects.presence(agent), on)
    return seen


def send_to_bob(match: str) -> Step:
    return Step(kind="tool_use", tool_name="mcp__hive__send", tool_input={"to": "bob", "body": f"re: {match}"},
                match=match)


async def test_hive_tools_are_presented_directly(broker: Any, sim: SimModel, harness_factory: Any,
                                                 client: HiveClient) -> None:
    await harness_factory("alice")
    mid = await send_op(client, "alice", "list your tools")
    await wait_for(lambda: _acked(broker, mid), timeout=90)
    first = sim.script.main_requests()[0]
    names = [t.get("name") for t in (first.body or {}).get("tools", [])]
    assert "mcp__hive__send" in names and "mcp__hive__recv" in names  # not deferred behind ToolSearch
    state = await client.request(ops.CTL_STATE, Empty(), agent="alice")
    assert state.tools_missing == []


async def test_stalled_stream_is_cancelled_and_handled_once_on_retry(
        broker: Any, sim: SimModel, harness_factory: Any, client: HiveClient, nats_transport: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_STALL_S", "3")
    monkeypatch.setenv("HIVE_STALL_KILL_S", "6")
    sim.script.add(Step(text="a long answer that stops half way", match="stall please", stall_after=3, stall_s=120),
                   send_to_bob("stall please"))
    seen = await presences(nats_transport)
    alice = await harness_factory("alice")
    mid = await send_op(client, "alice", "stall please")
    started = time.time()

    async def stalled() -> bool:
        st = await client.request(ops.CTL_STATE, Empty(), agent="alice")
        return st.turn_state == "stalled"

    await wait_for(stalled, timeout=3 + 10, interval=0.1)
    assert time.time() - started < 3 + 10
    await wait_for(lambda: _acked(broker, mid), timeout=60)
    assert any(p.state == "stalled" and p.reason == "no_progress" for p in seen)
    events = await history(client)
    assert [e.payload.get("kind") for e in events if e.kind == "error"].count("stalled") == 1
    assert any(e.kind == "error" and e.payload.get("kind") == "stall_cancelled" for e in events)
    to_op = [m for m in await broker.inbox("operator") if m.sender == "alice"]
    assert len(to_op) == 1 and "stalled" in to_op[0].body
    rows = await turn_rows(alice)
    assert [r.result_kind for r in rows] == ["failed", "ok"]
    assert rows[0].note and "stalled" in rows[0].note
    assert [m.body for m in await broker.inbox("bob")] == ["re: stall please"]  # handled once, on the retry
    assert await broker.acked(mid)


async def test_busy_silent_tool_is_not_stalled(broker: Any, sim: SimModel, harness_factory: Any,
                                               client: HiveClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_STALL_S", "2")
    monkeypatch.setenv("HIVE_STALL_KILL_S", "4")
    monkeypatch.setenv("HIVE_ALLOWED_TOOLS", "Bash")
    busy = "python3 -c 'import time\nt = time.time()\nwhile time.time() - t < 9: pass\nprint(\"spun\")'"
    sim.script.add(Step(kind="tool_use", tool_name="Bash", tool_input={"command": busy, "timeout": 60000},
                        match="spin the cpu"))
    alice = await harness_factory("alice")
    mid = await send_op(client, "alice", "spin the cpu")
    await wait_for(lambda: _acked(broker, mid), timeout=90)
    rows = await turn_rows(alice)
    assert [r.result_kind for r in rows] == ["ok"]
    events = await history(client)
    result = next(e for e in events if e.kind == "tool_result")
    assert "spun" in result.payload["text"]  # the tool ran its 9 s, past HIVE_STALL_KILL_S
    # the CLI printed nothing while the tool ran: only the CPU of its tree kept the turn alive
    use = next(e for e in events if e.kind == "tool_use")
    assert result.ts - use.ts > 4
    assert not [e for e in events if e.kind == "error"]
    assert "stalled" not in [e.payload.get("state") for e in events if e.kind == "turn_state_changed"]


async def test_usage_limit_parks_until_reset_then_handles_once(
        broker: Any, sim: SimModel, harness_factory: Any, client: HiveClient, nats_transport: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-simulator-fake")
    monkeypatch.setenv("HIVE_RATE_LIMIT_JITTER_S", "2")
    reset = int(time.time()) + 6
    sim.script.add(Step(kind="usage_limit", reset_at=reset, match="limited work"), send_to_bob("limited work"))
    seen = await presences(nats_transport)
    alice = await harness_factory("alice")
    mid = await send_op(client, "alice", "limited work")
    until = reset + jitter_s("alice", 2)

    async def parked() -> AgentState | None:
        st = await client.request(ops.CTL_STATE, Empty(), agent="alice")
        return st if st.rate_limited_until is not None else None

    st = await wait_for(parked, timeout=60, interval=0.05)
    assert st.rate_limited_until == pytest.approx(until, abs=1e-6)
    assert st.status == "rate_limited" and st.rate_limited
    five = st.plan["five_hour"]
    assert five["status"] == "rejected" and five["utilization"] == 1 and five["resets_at"] == reset
    await wait_for(lambda: _acked(broker, mid), timeout=60)
    limited = [r for r in sim.script.main_requests() if r.step is not None and r.step.kind == "usage_limit"]
    after = [r for r in sim.script.main_requests() if r.ts > limited[0].ts]
    assert len(limited) == 1 and after and min(r.ts for r in after) >= until  # no model request before it
    assert [m.body for m in await broker.inbox("bob")] == ["re: limited work"]
    assert await broker.handled_once(mid)
    assert [r.result_kind for r in await turn_rows(alice)] == ["rate_limited", "ok"]
    assert any(p.state == "waiting" and p.reason == "rate_limit" and p.until == pytest.approx(until) for p in seen)
    st = await client.request(ops.CTL_STATE, Empty(), agent="alice")
    assert st.rate_limited_until is None and st.status == "online"


def _holder(tmp_path: Path, cmd: str) -> tuple[str, Path]:
    """An agent command whose child keeps the CLI's stdout open long after the CLI exits."""
    real = os.path.realpath(cmd)
    wrapper = tmp_path / "agentbin" / "claude-with-holder"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nsleep 300 &\necho $! > "$HIVE_STATE_DIR/holder.pid"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    return real, wrapper


@pytest.mark.parametrize("confined", [False, True], ids=["unconfined", "confined"])
async def test_child_holding_stdout_does_not_hold_the_turn(
        confined: bool, broker: Any, sim: SimModel, harness_factory: Any, client: HiveClient, tmp_path: Path,
        cli_env: dict[str, str], hive_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real, wrapper = _holder(tmp_path, cli_env["HIVE_AGENT_CMD"])
    monkeypatch.setenv("HIVE_AGENT_CMD", str(wrapper))
    if confined:  # the wrapper's dir is bound; the real CLI's install must be too
        monkeypatch.setenv("HIVE_SANDBOX_RO_PATHS", str(Path(real).parents[1]))
    else:
        monkeypatch.setenv("HIVE_SANDBOX", "none")
        monkeypatch.setenv("HIVE_ALLOW_UNCONFINED", "1")
    alice = await harness_factory("alice")
    assert alice.cli.sandbox.confined is confined
    pidfile = hive_home / "agents" / "alice" / "state" / "holder.pid"
    try:
        mid = await send_op(client, "alice", "hold my stdout")
        await wait_for(lambda: _acked(broker, mid), timeout=60)
        rows = await turn_rows(alice)
        assert [r.result_kind for r in rows] == ["ok"], rows[0].note
        if not confined:  # its process group was killed at the turn's end
            pid = int(pidfile.read_text())

            async def gone() -> bool:
                return _dead(pid)

            await wait_for(gone, timeout=10)
    finally:
        if not confined and pidfile.exists():
            _kill_if_ours(int(pidfile.read_text()))


def _dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def _kill_if_ours(pid: int) -> None:
    """The test's own `sleep 300` only (checked by its command line), never anything else."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if cmd[:2] == [b"sleep", b"300"]:
        os.kill(pid, 9)


async def test_expired_token_is_needs_login_token_expired(
        broker: Any, sim: SimModel, harness_factory: Any, client: HiveClient, hive_home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-expired")
    expired = dict(kind="error", status=401, error_code="token_expired",
                   message="OAuth token has expired. Please obtain a new token or refresh your existing token.")
    sim.script.add(*[Step(**expired) for _ in range(4)])  # type: ignore[arg-type]
    alice = await harness_factory("alice")
    mid = await send_op(client, "alice", "are you logged in")

    async def needs_login() -> AgentState | None:
        st = await client.request(ops.CTL_STATE, Empty(), agent="alice")
        return st if st.status == "needs_login" else None

    st = await wait_for(needs_login, timeout=60)
    assert st.login_reason == "token_expired"
    assert alice.presence().state == "waiting" and alice.presence().reason == "needs_login"
    assert not await broker.acked(mid)
    sim.script.steps.clear()
    # the operator sets a long-lived token for this agent: it goes to the CLI, the message is handled
    tokens.write(tokens.agent_path(hive_home / "agents" / "alice" / "creds"), "sk-ant-oat01-fresh")
    await wait_for(lambda: _acked(broker, mid), timeout=60)
    last = sim.script.main_requests()[-1]
    assert last.headers.get("authorization") == "Bearer sk-ant-oat01-fresh"
    st = await client.request(ops.CTL_STATE, Empty(), agent="alice")
    assert st.status == "online" and st.login_reason is None
    assert json.loads((await turn_rows(alice))[-1].tool_calls_json) == {}
