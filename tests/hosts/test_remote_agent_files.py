"""What reads or runs on an agent's host, for an agent (or session) placed on an agent host (issue 26).

In-process and fast: the real hive-deployer (core host `core`) and a real hive-agenthost
service instance as host `h2` (its own HIVE_HOME) on one real nats-server, talking over
the registry's subjects as they do across machines. Covered: sessions placed on h2 (run
there, output and outputs back on the core host at the usual paths; a runtime that cannot
confine fails the session with its reason), `hive.deployer.history`/`turn_stats` of an agent
on h2 (read there; a lost h2 is `unavailable` naming it), `hive agents export` of an agent on
h2 (its state fetched from h2), and import replacing an agent that lived on h2.
"""

from __future__ import annotations

import json
import tarfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hive_agenthost.service import AgentHostService

from hive_deployer.lifecycle import Options
from hive_deployer.runtimes import ProcessRuntime, Runtime
from hive_deployer.service import DeployerService
from hive_deployer.store import AgentRow
from hivewire.cli import inspect
from hivewire.errors import HiveError
from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient
from hivewire.settings import Settings
from hivewire.wire import ops
from hivewire.wire.deployer import (
    AgentHistoryRequest,
    ExportRequest,
    ImportRequest,
    SessionCreate,
    SessionRef,
    TurnStatsRequest,
)
from hivewire.wire.op import Op
from tests.deployer.test_history import harness_files
from tests.support.procs import executable, wait_for

AGENT = """#!/bin/sh
echo '{"type":"assistant","message":{"content":[{"type":"text","text":"working in '"$HIVE_SESSION_DIR"'"}]}}'
echo "plain line: task=$HIVE_SESSION_TASK args=$*"
echo "result for $HIVE_SESSION_ID" > "$HIVE_SESSION_OUTPUT/result.txt"
mkdir -p "$HIVE_SESSION_OUTPUT/sub" && printf 'nested' > "$HIVE_SESSION_OUTPUT/sub/n.txt"
printf '%s%s\n' '{"type":"result","subtype":"success","is_error":false,"result":"done",' \
  '"total_cost_usd":0.25,"usage":{"input_tokens":10,"output_tokens":5}}'
case "$1" in fail) exit 3;; esac
exit 0
"""

Req = TypeVar("Req")
Rep = TypeVar("Rep")


@dataclass
class Hive:
    svc: DeployerService
    client: HiveClient
    core: Path
    h2: Path
    host: AgentHostService | None

    async def request(self, op: Op[Req, Rep], req: Req) -> Rep:
        return await self.client.request(op, req, timeout=30.0)


def registry(home: Path, placements: dict[str, str]) -> None:
    now = time.time()
    rec = {"state": "online", "added_at": now, "joined_at": now, "token_used": True, "token_hash": None,
           "agent_limit": 0}
    path = home / "hosts" / "registry.json"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(json.dumps({"hosts": {"h2": rec}, "placements": placements}))


@pytest.fixture
def fake_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = executable(tmp_path / "fake-agent", AGENT)
    monkeypatch.setenv("HIVE_SESSION_CMD", str(p))
    return p


@pytest.fixture
async def make_hive(settings: Settings, nats_transport: NatsTransport, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Callable[..., Any]]:
    monkeypatch.setenv("HIVE_DEPLOYER_ENSURE_MANAGER", "0")
    monkeypatch.setenv("HIVE_HOST_NAME", "core")
    monkeypatch.setenv("HIVE_HOST_LOST_S", "2")
    monkeypatch.setenv("HIVE_HOST_HEARTBEAT_S", "0.3")
    started: list[Any] = []

    async def make(host_runtime: Runtime | None = None, placements: dict[str, str] | None = None) -> Hive:
        registry(settings.home, placements or {})
        h2_home = tmp_path / "h2"
        h2_home.mkdir()
        svc = DeployerService(nats_transport, settings, runtime=ProcessRuntime(allow_unconfined=True),
                              options=Options(stop_timeout=5.0), ensure_manager=False)
        await svc.start()
        started.append(svc)
        h2 = AgentHostService(nats_transport, Settings(home=h2_home, nats_url=settings.nats_url,
                                                       metrics_addr=settings.metrics_addr),
                              host="h2", runtime=host_runtime or ProcessRuntime(allow_unconfined=True))
        await h2.start()
        started.append(h2)

        async def h2_heard() -> bool:
            return svc.hosts.live.get("h2") is not None and svc.hosts.live["h2"].hb is not None

        assert await wait_for(h2_heard, timeout=10)
        return Hive(svc, HiveClient(nats_transport), settings.home, h2_home, h2)

    yield make
    for s in reversed(started):
        if s._handle is not None:  # not stopped by the test
            await s.stop()


async def finished(hive: Hive, sid: str) -> str:
    async def done() -> str | None:
        st = (await hive.request(ops.SESSION_STATUS, SessionRef(session_id=sid))).status
        return st if st in ("completed", "failed") else None

    got = await wait_for(done, timeout=30)
    assert got
    return str(got)


async def test_a_session_placed_on_an_agent_host_runs_there_and_its_output_comes_home(
        make_hive: Callable[..., Any], fake_agent: Path) -> None:
    hive: Hive = await make_hive()
    s = await hive.request(ops.SESSION_CREATE, SessionCreate(task="Build it", metadata={"k": 1}, host="h2"))
    sid = s.session_id
    assert s.host == "h2" and s.status == "created"
    assert Path(s.output_dir) == hive.core / "session-output" / sid  # the caller's paths are the core host's
    r = await hive.request(ops.SESSION_START, SessionRef(session_id=sid, args=["--x", "y"]))
    assert r.status in ("running", "completed")
    assert await finished(hive, sid) == "completed"

    out = Path((await hive.request(ops.SESSION_OUTPUT_DIR, SessionRef(session_id=sid))).path)
    assert (out / "result.txt").read_text() == f"result for {sid}\n"
    assert (out / "sub" / "n.txt").read_text() == "nested"
    log = text(Path((await hive.request(ops.SESSION_LOG, SessionRef(session_id=sid))).path))
    assert f"working in {hive.h2 / 'sessions' / sid}" in log  # it ran in h2's HIVE_HOME
    assert "plain line: task=Build it args=--x y" in log
    events = (hive.core / "sessions" / sid / "session.jsonl").read_text().splitlines()
    assert json.loads(events[-1])["type"] == "result"
    got = await hive.request(ops.SESSION_GET, SessionRef(session_id=sid))
    assert got.exit_code == 0 and got.cost_usd == 0.25 and got.tokens == 15 and got.host == "h2"
    # h2 kept nothing once the outputs were home
    assert not (hive.h2 / "sessions" / sid).exists() and not (hive.h2 / "session-output" / sid).exists()


async def test_a_failing_remote_session_and_a_host_that_cannot_confine(make_hive: Callable[..., Any],
                                                                     fake_agent: Path) -> None:
    hive: Hive = await make_hive(host_runtime=ProcessRuntime(allow_unconfined=False))
    s = await hive.request(ops.SESSION_CREATE, SessionCreate(task="t", host="h2"))
    await hive.request(ops.SESSION_START, SessionRef(session_id=s.session_id))
    assert await finished(hive, s.session_id) == "failed"
    log = (hive.core / "sessions" / s.session_id / "session.log").read_text()
    assert "start failed on host h2" in log and "HIVE_ALLOW_UNCONFINED" in log  # fails closed, says why
    for bad, code in (("h9", "not_found"), ("../h2", "bad_name")):
        with pytest.raises(HiveError) as e:
            await hive.request(ops.SESSION_CREATE, SessionCreate(task="t", host=bad))
        assert e.value.code == code
    local = await hive.request(ops.SESSION_CREATE, SessionCreate(task="t", host="core"))
    assert local.host == ""  # the core host by name: a local session


async def test_a_remote_session_exit_code_is_kept(make_hive: Callable[..., Any], fake_agent: Path) -> None:
    hive: Hive = await make_hive()
    s = await hive.request(ops.SESSION_CREATE, SessionCreate(task="t", host="h2"))
    await hive.request(ops.SESSION_START, SessionRef(session_id=s.session_id, args=["fail"]))
    assert await finished(hive, s.session_id) == "failed"
    got = await hive.request(ops.SESSION_GET, SessionRef(session_id=s.session_id))
    assert got.exit_code == 3
    assert (Path(got.output_dir) / "result.txt").exists()  # outputs come home whatever the exit code


async def test_history_and_turn_stats_of_an_agent_on_an_agent_host(make_hive: Callable[..., Any]) -> None:
    hive: Hive = await make_hive(placements={"bob": "h2"})
    now = time.time()
    await hive.svc.store.save(AgentRow(name="bob", state="crashed", desired="stopped", runtime="process",
                                       created_at=now, since=now))
    state = hive.h2 / "agents" / "bob" / "state"
    state.mkdir(parents=True)
    await harness_files(state)
    assert not (hive.core / "agents" / "bob" / "state" / "events.sqlite").exists()  # nothing of bob's here
    reply = await hive.request(ops.DEPLOYER_HISTORY, AgentHistoryRequest(name="bob", limit=3))
    assert [e.id for e in reply.events] == [5, 4, 3]
    turns = await hive.request(ops.DEPLOYER_TURN_STATS, TurnStatsRequest(name="bob", limit=2))
    assert [t.last_input_tokens for t in turns.turns] == [100, 200]

    assert hive.host is not None
    await hive.host.stop()  # h2 goes silent: lost after HIVE_HOST_LOST_S

    async def lost() -> bool:
        return hive.svc.hosts.lost("h2")

    assert await wait_for(lost, timeout=15)
    for op, req in ((ops.DEPLOYER_HISTORY, AgentHistoryRequest(name="bob")),
                    (ops.DEPLOYER_TURN_STATS, TurnStatsRequest(name="bob"))):
        with pytest.raises(HiveError) as e:
            await hive.request(op, req)  # type: ignore[arg-type]
        assert e.value.code == "unavailable" and "h2" in e.value.message and "lost" in e.value.message


async def test_export_and_import_of_an_agent_on_an_agent_host(make_hive: Callable[..., Any], tmp_path: Path) -> None:
    hive: Hive = await make_hive(placements={"bob": "h2"})
    now = time.time()
    await hive.svc.store.save(AgentRow(name="bob", state="stopped", desired="stopped", runtime="process",
                                       created_at=now, since=now))
    (hive.core / "agents" / "bob").mkdir(parents=True)  # his config lives here; state and creds on h2
    state, creds = hive.h2 / "agents" / "bob" / "state", hive.h2 / "agents" / "bob" / "creds"
    state.mkdir(parents=True)
    creds.mkdir()
    await harness_files(state)
    (creds / "login.json").write_text('{"token": "t"}')
    dest = tmp_path / "bob.tar.gz"
    got = await hive.request(ops.DEPLOYER_EXPORT, ExportRequest(name="bob", path=str(dest), include_creds=True))
    assert got.bytes == dest.stat().st_size
    names = _members(dest)
    assert {"state/events.sqlite", "state/turn-stats.sqlite", "creds/login.json", "manifest.json"} <= names
    assert not list((hive.h2 / "run" / "moves").iterdir())  # h2's packed copy was dropped
    assert not list((hive.core / "run" / "moves").iterdir())  # and the core's scratch copy

    # importing over bob (force): the imported bob lives on the core host; h2 forgets his files
    info = await hive.request(ops.DEPLOYER_IMPORT, ImportRequest(path=str(dest), force=True))
    assert info.name == "bob" and info.host == "core"
    assert hive.svc.hosts.placed("bob") is None and not state.exists() and not creds.exists()
    assert (hive.core / "agents" / "bob" / "creds" / "login.json").read_text() == '{"token": "t"}'
    reply = await hive.request(ops.DEPLOYER_HISTORY, AgentHistoryRequest(name="bob", limit=2))
    assert [e.id for e in reply.events] == [5, 4]  # now read on the core host


async def test_hive_status_lists_agent_hosts(make_hive: Callable[..., Any], nats_transport: NatsTransport) -> None:
    hive: Hive = await make_hive(placements={"bob": "h2"})
    now = time.time()
    await hive.svc.store.save(AgentRow(name="bob", state="stopped", desired="stopped", runtime="process",
                                       created_at=now, since=now))
    rows = await inspect.agent_hosts(nats_transport)
    assert [(r["name"], r["id"], r["metadata"]["state"], r["metadata"]["agents"]) for r in rows] == [
        ("hive-agenthost", "h2", "online", "bob")]
    assert inspect._host_state(rows[0]["metadata"]).startswith("online (")
    assert hive.host is not None
    await hive.host.stop()

    async def lost() -> bool:
        return [r["metadata"]["state"] for r in await inspect.agent_hosts(nats_transport)] == ["lost"]

    assert await wait_for(lost, timeout=15)


def text(path: Path) -> str:
    return path.read_text()


def _members(path: Path) -> set[str]:
    with tarfile.open(path) as t:
        return set(t.getnames())
