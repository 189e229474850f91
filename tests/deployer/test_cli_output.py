"""`hive agents ...` output for people: readable lines, whole values when piped, plain empty lists.

The deployer's replies are stood in for (`_call` patched): this is about what
the CLI prints, the replies' meaning is tested against the real deployer.
"""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from hive_deployer import cli
from hivewire.wire.deployer import AgentInfo, AgentList, DestroyRequest, SessionList
from hivewire.wire.op import Op


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []
    replies: dict[str, Any] = {}

    def fake(op: Op[Any, Any], req: Any, timeout: float = 60.0, **params: str) -> Any:
        assert isinstance(req, op.request), (op.id, req)
        seen.append((op.id, req))
        return replies[op.name](req)

    monkeypatch.setattr(cli, "_call", fake)
    monkeypatch.setattr(cli, "agent_states", lambda names: {})  # each harness's ctl.state: none here
    replies["destroy"] = lambda r: AgentInfo(name=r.name, state="destroyed", purged=r.purge)
    replies["list"] = lambda r: AgentList(agents=[])
    replies["stop"] = lambda r: AgentInfo(name=r.name, state="stopped", runtime="bwrap")
    return seen


def run(*args: str) -> str:
    app = typer.Typer()
    cli.register(app)
    out = CliRunner().invoke(app, list(args))
    assert out.exit_code == 0, out.output
    return out.output


def test_destroy_prints_a_line_and_purge_does_not_claim_state_is_kept(calls: list[tuple[str, Any]]) -> None:
    kept = run("agents", "destroy", "alice")
    assert kept.strip() == "alice: destroyed; state kept as a tombstone (`hive agents revive alice` brings it back)"
    purged = run("agents", "destroy", "alice", "--purge", "--yes")
    assert "purged" in purged and "kept" not in purged and "{" not in purged
    assert [req for _, req in calls] == [DestroyRequest(name="alice"), DestroyRequest(name="alice", purge=True)]
    assert '"purged": true' in run("agents", "destroy", "alice", "--purge", "--yes", "--json")


def test_lifecycle_verbs_print_a_line(calls: list[tuple[str, Any]]) -> None:
    assert run("agents", "stop", "alice").strip() == "alice: stopped, runtime bwrap"


def test_empty_and_piped_agent_lists(calls: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("agents", "list").strip() == "no agents (spawn one with `hive agents spawn NAME`)"
    long_name = "a" * 30 + "-" + "b" * 30
    monkeypatch.setattr(cli, "_call", lambda *a, **k: AgentList(agents=[
        AgentInfo(name=long_name, state="running", runtime="bwrap", pid=4242, deployed="proposal/" + "c" * 40)]))
    lines = run("agents", "list").splitlines()
    assert lines[0].split("\t")[:3] == ["name", "state", "transient"]
    row = lines[1].split("\t")
    assert row[0] == long_name and row[4] == "4242" and row[5] == "proposal/" + "c" * 40  # never cut
    monkeypatch.setattr(cli, "_call", lambda *a, **k: SessionList(sessions=[]))
    assert run("session", "list").strip() == "no sessions"


def test_agent_status_column() -> None:
    from hivewire.wire.agent import AgentState

    base = {"turn_state": "idle", "turn_state_since": 0.0, "model": "haiku", "context_window": 200000}
    assert cli._status(None) == "-"
    assert cli._status(AgentState(status="online", **base)) == "online"  # type: ignore[arg-type]
    assert cli._status(AgentState(status="needs_login", login_reason="token_expired",  # type: ignore[arg-type]
                                  **base)) == "needs_login (token_expired)"
    assert cli._status(AgentState(status="rate_limited", rate_limited_until=1e9,  # type: ignore[arg-type]
                                  **base)).startswith("rate_limited until ")
    assert cli._status(AgentState(status="online", **{**base, "turn_state": "stalled"})) == "stalled"  # type: ignore[arg-type]


def test_agents_list_says_until_when_a_rate_limited_agent_resumes(calls: list[tuple[str, Any]],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 23 item 3: the status column of a parked agent names the local time its park ends."""
    import time

    from hivewire.wire.agent import AgentState

    until = time.time() + 90
    state = AgentState(status="rate_limited", turn_state="idle", turn_state_since=0.0, model="haiku",
                       context_window=200000, rate_limited_until=until,
                       plan={"five_hour": {"utilization": 1.0, "resets_at": until, "status": "rejected"}})
    monkeypatch.setattr(cli, "_call", lambda *a, **k: AgentList(agents=[AgentInfo(name="alice", state="running")]))
    monkeypatch.setattr(cli, "agent_states", lambda names: {n: state for n in names})
    lines = run("agents", "list").splitlines()
    status = lines[0].split("\t").index("status")
    assert lines[1].split("\t")[status] == "rate_limited until " + time.strftime("%H:%M", time.localtime(until))
