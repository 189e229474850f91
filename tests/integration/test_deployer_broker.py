"""The approval handshake between the REAL hive-broker and the REAL hive-deployer.

Both services run in this process, each on its own connection to the real
nats-server; the deployer runs real harness processes (process runtime) and
real git. Nothing in between is faked: the test plays the manager (it calls
`hive.broker.manager.*` exactly as the manager's MCP tools do) and the
operator (`hive.operator.*`, as the dashboard and CLI do).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hive_broker import build as build_broker
from hive_deployer import git
from hive_deployer.lifecycle import Options
from hive_deployer.runtimes import ProcessRuntime
from hive_deployer.service import DeployerService
from hivewire import codec, subjects
from hivewire.errors import HiveError
from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient, MicroService
from hivewire.settings import Settings
from hivewire.wire import broker as wb
from hivewire.wire import ops
from hivewire.wire.agent import AgentState
from hivewire.wire.common import Empty
from hivewire.wire.deployer import AgentInfo, DestroyRequest, NameRequest, SpawnRequest
from tests.support.procs import wait_for

pytestmark = pytest.mark.slow

SYSTEM = "[hive-deployer]"  # the documented prefix of the deployer's system messages (sender `operator`)


@dataclass
class Stack:
    home: Path
    client: HiveClient
    deployer: DeployerService
    settings: Settings
    broker_transport: NatsTransport
    broker: MicroService | None = None
    wakes: dict[str, list[wb.Wake]] = field(default_factory=dict)

    async def start_broker(self) -> None:
        self.broker = await build_broker(self.broker_transport, self.settings, "")
        await self.broker.start()
        await self.broker_transport.flush()  # subscribed at the server before anyone asks

    async def stop_broker(self) -> None:
        if self.broker is not None:
            await self.broker.stop()
            self.broker = None

    # --- as the manager (its MCP tools call these subjects under its own token) ---
    async def request(self, kind: str, agent: str, commit_ref: str | None = None) -> str:
        req = wb.ApproveRequest(kind=kind, agent=agent, commit_ref=commit_ref)  # type: ignore[arg-type]
        return (await self.client.request(ops.BROKER_APPROVE, req, agent="manager")).approval_id

    # --- as the operator -------------------------------------------------------------
    async def resolve(self, aid: str, decision: str, note: str | None = None) -> wb.Approval:
        req = wb.ResolveRequest(approval_id=aid, decision=decision, note=note)  # type: ignore[arg-type]
        return await self.client.request(ops.APPROVALS_RESOLVE, req)

    async def approval(self, aid: str) -> wb.Approval:
        got = await self.client.request(ops.APPROVALS_LIST, wb.ApprovalsListRequest(status="all", limit=500))
        return next(a for a in got.approvals if a.approval_id == aid)

    async def wait_status(self, aid: str, status: str, timeout: float = 30.0) -> wb.Approval:
        async def check() -> wb.Approval | None:
            a = await self.approval(aid)
            assert a.status in ("pending", "approved", status), f"approval {aid} ended {a.status}: {a.note}"
            return a if a.status == status else None

        return await wait_for(check, timeout=timeout, interval=0.1)

    async def inbox(self, agent: str) -> list[wb.Message]:
        r = await self.client.request(ops.MESSAGES_LIST, wb.MessagesListRequest(recipient=agent, limit=200))
        return r.messages

    async def system_messages(self, agent: str, contains: str) -> list[wb.Message]:
        return [m for m in await self.inbox(agent) if m.body.startswith(SYSTEM) and contains in m.body]

    async def send(self, to: str, body: str = "hello") -> wb.SendReply:
        return await self.client.request(ops.BROKER_SEND, wb.SendRequest(to=to, body=body), agent="operator")

    async def known(self) -> list[str]:
        return (await self.client.request(ops.REGISTRY_LIST, Empty())).agents

    async def agent(self, name: str) -> AgentInfo | None:
        got = await self.client.request(ops.DEPLOYER_LIST, Empty(), timeout=20)
        return next((a for a in got.agents if a.name == name), None)

    async def answers(self, name: str, timeout: float = 30.0) -> AgentState:
        return await wait_for(lambda: self.client.request(ops.CTL_STATE, Empty(), timeout=1, agent=name),
                              timeout=timeout)


@pytest.fixture
async def stack(hive_home: Path, nats_url: str, nats_transport: NatsTransport,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    # Harnesses need no agent CLI here: a turn fails fast and the message stays in the broker.
    monkeypatch.setenv("HIVE_AGENT_CMD", "false")
    monkeypatch.setenv("HIVE_DEPLOYER_ENSURE_MANAGER", "0")
    monkeypatch.setenv("HIVE_DEPLOYER_REGISTRY_SYNC_S", "0.5")
    settings = Settings.from_env()
    bt = await NatsTransport.connect(nats_url, name="hive-broker-test", forever=False)
    dt = await NatsTransport.connect(nats_url, name="hive-deployer-test", forever=False)
    opts = Options(stop_timeout=5.0, presence_stale_s=15.0, backoff_base_s=0.2, backoff_max_s=2.0)
    unconfined = ProcessRuntime(allow_unconfined=True)
    deployer = DeployerService(dt, settings, runtime=unconfined, options=opts, ensure_manager=False)
    stack = Stack(hive_home, HiveClient(nats_transport, timeout=20.0), deployer, settings, bt)

    async def on_wake(msg: Any) -> None:
        stack.wakes.setdefault(subjects.token(msg.subject, 2), []).append(codec.decode(msg.data, wb.Wake))

    sub = await nats_transport.nc.subscribe(subjects.agent_pattern("wake"), cb=on_wake)
    try:
        await stack.start_broker()  # what tests.support.procs.running does, restartable
        await deployer.start()
        await dt.flush()  # its endpoints' subscriptions reach the server before the first request
        try:
            yield stack
        finally:
            await deployer.stop()
            await stack.stop_broker()
    finally:
        await sub.unsubscribe()
        await dt.close()
        await bt.close()


def commit(repo: Path, files: dict[str, str], msg: str) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    return git.commit_all(repo, msg)


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(x.decode().split("=", 1) for x in raw if b"=" in x)


def config_env(pid: int) -> dict[str, str]:
    """The agent's `hive.env` as its harness got it (for its sandboxed CLI only)."""
    got: dict[str, str] = json.loads(environ(pid)["HIVE_AGENT_CONFIG_ENV"])
    return got


@pytest.fixture(autouse=True)
def _allow_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_SANDBOX_ENV_ALLOW", "AGENT_PROFILE")  # an operator's own addition to the allowlist


async def has_tag(repo: Path, tag: str) -> bool:
    return git.is_repo(repo) and tag in git.tags(repo)


async def test_apply_commit_deployed_failed_and_denied(stack: Stack) -> None:
    s = stack
    await s.client.request(ops.DEPLOYER_SPAWN, SpawnRequest(name="alice"), timeout=30)
    await wait_for(lambda: _contains(s.known(), "alice"))
    await s.answers("alice")
    cfg, applied = s.home / "agents/alice/config", s.home / "applied/alice"

    # 1. the manager commits and asks; the deployer tags the proposal while it is pending
    sha = commit(cfg, {"hive.env": "AGENT_PROFILE=v2\n"}, "profile v2")
    aid = await s.request("apply_commit", "alice", sha)
    await wait_for(lambda: has_tag(applied, f"proposal/{aid}"), timeout=20)
    assert (await s.approval(aid)).status == "pending"
    commit(cfg, {"hive.env": "AGENT_PROFILE=later-edit\n"}, "a later edit cannot change the proposal")

    # 2. the operator approves; the deployer builds and deploys; the broker records `deployed`
    await s.resolve(aid, "approve")
    done = await s.wait_status(aid, "deployed", timeout=60)
    assert done.resolved_at is not None
    assert git.tags(applied, f"*/{aid}") == sorted(f"{t}/{aid}" for t in ("approved", "building", "deployed",
                                                                             "proposal"))
    assert git.log_subjects(s.home / "meta", 1) == [f"deploy alice deployed/{aid} {sha[:12]}"]
    assert git.head(applied) == sha
    a = await s.agent("alice")
    assert a is not None and a.state == "running" and a.deployed == f"deployed/{aid}" and a.pid
    assert config_env(a.pid)["AGENT_PROFILE"] == "v2"
    # 3. the manager hears it: the broker's approval note, then the deployer's outcome, each with a wake
    await wait_for(lambda: s.system_messages("manager", f"deploy alice deployed/{aid}"))
    approved = [m for m in await s.inbox("manager") if m.kind == "approval" and m.in_reply_to == aid]
    assert approved and "approved" in approved[0].body
    reasons = {w.reason for w in s.wakes.get("manager", [])}
    assert {"approval", "message"} <= reasons
    assert await s.system_messages("alice", f"deployed/{aid}")  # and alice itself

    # a failing build: broker `failed` with the error, the previous deploy keeps running untouched
    bad = commit(cfg, {"agent.nix": "{ this is = not nix"}, "broken")
    aid2 = await s.request("apply_commit", "alice", bad)
    await wait_for(lambda: has_tag(applied, f"proposal/{aid2}"), timeout=20)
    await s.resolve(aid2, "approve")
    failed = await s.wait_status(aid2, "failed", timeout=60)
    assert "agent.nix" in (failed.note or "")
    assert await has_tag(applied, f"failed/{aid2}") and not await has_tag(applied, f"deployed/{aid2}")
    b = await s.agent("alice")
    assert b is not None and b.pid == a.pid and b.state == "running" and b.deployed == f"deployed/{aid}"
    assert git.head(applied) == sha
    assert git.log_subjects(s.home / "meta", 1) == [f"deploy alice deployed/{aid} {sha[:12]}"]
    await wait_for(lambda: s.system_messages("manager", f"deploy {aid2} of alice failed"))

    # deny: broker `denied` (stays denied), tag denied/<id> carrying the note, the manager told
    other = commit(cfg, {"hive.env": "AGENT_PROFILE=v3\n"}, "v3")
    aid3 = await s.request("apply_commit", "alice", other)
    await wait_for(lambda: has_tag(applied, f"proposal/{aid3}"), timeout=20)
    await s.resolve(aid3, "deny", "not now")
    await wait_for(lambda: has_tag(applied, f"denied/{aid3}"), timeout=20)
    assert "not now" in git.tag_message(applied, f"denied/{aid3}")
    assert not await has_tag(applied, f"approved/{aid3}")
    await wait_for(lambda: s.system_messages("manager", f"deploy {aid3} of alice denied: not now"))
    assert (await s.approval(aid3)).status == "denied"
    c = await s.agent("alice")
    assert c is not None and c.pid == a.pid and c.deployed == f"deployed/{aid}"


async def test_spawn_and_init_config_approvals(stack: Stack) -> None:
    s = stack
    with pytest.raises(HiveError) as err:
        await s.send("bob")
    assert err.value.code == "unknown_recipient"  # not created yet: no silent orphan

    # init_config: approved -> the deployer seeds agents/bob/config from the template -> `deployed`
    aid = await s.request("init_config", "bob")
    assert (await s.approval(aid)).status == "pending"
    assert not (s.home / "agents/bob/config").exists()  # nothing happens before the operator says so
    await s.resolve(aid, "approve")
    await s.wait_status(aid, "deployed")
    cfg = s.home / "agents/bob/config"
    assert git.head(cfg) and (cfg / "agent.nix").is_file()
    assert git.log_subjects(cfg, 1) == ["init_config bob from the hive template"]
    assert await s.agent("bob") is None and "bob" not in await s.known()  # a config only, no agent yet

    # the manager edits the fresh config, then asks to spawn: bob comes up on that config
    commit(cfg, {"hive.env": "AGENT_PROFILE=from-manager\n"}, "bob's profile")
    sid = await s.request("spawn", "bob")
    assert (await s.approval(sid)).status == "pending"
    await s.resolve(sid, "approve")
    await s.wait_status(sid, "deployed", timeout=60)
    info = await s.agent("bob")
    assert info is not None and info.state == "running" and info.pid
    assert config_env(info.pid)["AGENT_PROFILE"] == "from-manager"
    assert (await s.answers("bob")).status in ("online", "needs_login")  # a real harness answers on NATS
    await wait_for(lambda: _contains(s.known(), "bob"))
    sent = await s.send("bob", "welcome, bob")
    assert sent.recipients == ["bob"]
    assert await s.system_messages("bob", "spawned bob")
    note = [m for m in await s.inbox("manager") if m.kind == "approval" and m.in_reply_to == sid]
    assert note and "approved" in note[0].body

    # a spawn whose harness cannot start: the broker's approval ends `failed` with the reason
    s.deployer.agents.opts.harness_cmd = "/nonexistent/hive-harness"
    fid = await s.request("spawn", "fred")
    await s.resolve(fid, "approve")
    bad = await s.wait_status(fid, "failed", timeout=30)
    assert "could not start fred" in (bad.note or "")
    fred = await s.agent("fred")
    assert fred is not None and fred.state != "running" and fred.transient is None


async def test_destroy_forgets_and_fails_pending_then_revive(stack: Stack) -> None:
    s = stack
    await s.client.request(ops.DEPLOYER_SPAWN, SpawnRequest(name="carol"), timeout=30)
    await wait_for(lambda: _contains(s.known(), "carol"))
    await s.send("carol", "before")
    cfg = s.home / "agents/carol/config"
    sha = commit(cfg, {"hive.env": "AGENT_PROFILE=never\n"}, "pending forever")
    pending = await s.request("apply_commit", "carol", sha)
    await wait_for(lambda: has_tag(s.home / "applied/carol", f"proposal/{pending}"), timeout=20)

    info = await s.client.request(ops.DEPLOYER_DESTROY, DestroyRequest(name="carol"), timeout=30)
    assert info.state == "destroyed"
    # the broker forgets carol: a send is an error, not an orphan
    await wait_for(lambda: _lacks(s.known(), "carol"))
    with pytest.raises(HiveError) as err:
        await s.send("carol", "after")
    assert err.value.code == "unknown_recipient"
    # destroy fails every pending approval of carol, and the requester hears it
    failed = await s.wait_status(pending, "failed")
    assert "destroyed" in (failed.note or "")
    note = [m for m in await s.inbox("manager") if m.kind == "approval" and m.in_reply_to == pending]
    assert note and "failed" in note[0].body
    # the deployer's system messages are in carol's real inbox, from the documented sender
    for words in ("spawned carol", "destroyed (state kept)"):
        got = await s.system_messages("carol", words)
        assert got and all(m.sender == "operator" for m in got), words

    # revive = a spawn approval from the manager; carol is back with her kept state
    (s.home / "agents/carol/state/notes.md").write_text("kept\n")
    rid = await s.request("spawn", "carol")
    again = await s.client.request(ops.REGISTRY_REMOVE, wb.RegistryRequest(name="carol"))
    assert not again.changed and (await s.approval(rid)).status == "pending"  # a repeated remove fails nothing
    await s.resolve(rid, "approve")
    await s.wait_status(rid, "deployed", timeout=60)
    back = await s.agent("carol")
    assert back is not None and back.state == "running"
    assert (s.home / "agents/carol/state/notes.md").read_text() == "kept\n"
    await wait_for(lambda: _contains(s.known(), "carol"))
    assert (await s.send("carol", "welcome back")).recipients == ["carol"]
    assert await s.system_messages("carol", "revived")
    await s.answers("carol")


async def test_deployer_system_messages_reach_real_inboxes(stack: Stack) -> None:
    s = stack
    await s.client.request(ops.DEPLOYER_SPAWN, SpawnRequest(name="dave"), timeout=30)
    await s.answers("dave")
    for op, words in ((ops.DEPLOYER_RESTART, "restarted"), (ops.DEPLOYER_STOP, "stopping"),
                      (ops.DEPLOYER_START, "started")):
        await s.client.request(op, NameRequest(name="dave"), timeout=30)
        got = await wait_for(lambda w=words: s.system_messages("dave", w))  # type: ignore[misc]
        assert got[0].sender == "operator" and got[0].to == "dave" and got[0].kind == "message"
    # a crash is told to the manager, also through the broker
    a = await s.agent("dave")
    assert a is not None and a.pid
    os.kill(a.pid, 9)
    got = await wait_for(lambda: s.system_messages("manager", "agent dave crashed"), timeout=20)
    assert got[0].sender == "operator"
    assert any(w.reason == "message" for w in s.wakes.get("dave", []))


async def test_registry_updates_lost_while_the_broker_was_down_are_reconciled(stack: Stack) -> None:
    s = stack
    for name in ("gina", "hank"):
        await s.client.request(ops.DEPLOYER_SPAWN, SpawnRequest(name=name), timeout=30)
    await wait_for(lambda: _contains(s.known(), "hank"))
    await s.stop_broker()
    # while the broker is down: gina is destroyed (its `remove` is lost) and ivan spawned (its `upsert` too)
    await s.client.request(ops.DEPLOYER_DESTROY, DestroyRequest(name="gina"), timeout=30)
    await s.client.request(ops.DEPLOYER_SPAWN, SpawnRequest(name="ivan"), timeout=30)
    await s.client.request(ops.DEPLOYER_STOP, NameRequest(name="ivan"), timeout=30)  # no presence
    await s.start_broker()
    await wait_for(lambda: _lacks(s.known(), "gina"), timeout=20)
    await wait_for(lambda: _contains(s.known(), "ivan"), timeout=20)
    with pytest.raises(HiveError) as err:
        await s.send("gina")
    assert err.value.code == "unknown_recipient"
    assert (await s.send("ivan", "you exist")).recipients == ["ivan"]  # stopped, but created: known
    assert "hank" in await s.known()


async def test_a_deploy_outcome_the_broker_missed_is_told_again(stack: Stack) -> None:
    s = stack
    await s.client.request(ops.DEPLOYER_SPAWN, SpawnRequest(name="jill"), timeout=30)
    sha = commit(s.home / "agents/jill/config", {"hive.env": "AGENT_PROFILE=j2\n"}, "j2")
    aid = await s.request("apply_commit", "jill", sha)
    await wait_for(lambda: has_tag(s.home / "applied/jill", f"proposal/{aid}"), timeout=20)
    events: list[bytes] = []

    async def on_event(msg: Any) -> None:
        events.append(msg.data)

    sub = await s.broker_transport.nc.subscribe(subjects.deployer_deploy("jill"), cb=on_event)
    lock = s.deployer.deploys.lock
    async with lock:  # hold the deploy lock so the broker can be stopped while the bridge waits on it
        await s.resolve(aid, "approve")
        await wait_for(lambda: _waiting(lock), timeout=20, interval=0.01)
        await s.stop_broker()  # the DeployEvent of this deploy goes nowhere
    await wait_for(lambda: _truthy(events), timeout=30)  # published while no broker listened
    await sub.unsubscribe()
    assert await has_tag(s.home / "applied/jill", f"deployed/{aid}")
    await s.start_broker()
    assert (await s.approval(aid)).status == "approved"  # the broker missed it ...
    await s.wait_status(aid, "deployed", timeout=20)  # ... and is told again


async def _truthy(x: Any) -> bool:
    return bool(x)


async def _waiting(lock: Any) -> bool:
    return bool(lock._lock._waiters)  # the bridge's deploy is queued behind the test's hold


async def _contains(coro: Any, name: str) -> bool:
    return name in await coro


async def _lacks(coro: Any, name: str) -> bool:
    return name not in await coro
