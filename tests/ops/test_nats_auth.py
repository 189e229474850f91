"""NATS security against a real nats-server running the config `hive nats-config` writes."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from opskit import ConnectAs, collect_leaks, collector, refused, true

from hive_deployer.metrics import FAILURES
from hive_deployer.microrelay import MicroRelay
from hivewire import natsauth, subjects
from hivewire.errors import HiveError
from hivewire.nats_transport import NatsTransport, connect_nats, flush
from hivewire.natsd import NatsServer
from hivewire.service import Context, Endpoint, MicroService
from hivewire.transport import Transport
from hivewire.wire.common import Empty

from support.procs import ServiceProcess, ping_names, wait_for

# Who serves what: every subject a service answers.
SERVES: dict[str, list[str]] = {
    "svc_broker": [subjects.broker(a, v) for a in ("alice", "bob", "manager", "operator")
                   for v in subjects.BROKER_VERBS]
    + [subjects.operator(a, v) for a, v in subjects.OPERATOR_SUBJECTS]
    + [subjects.broker_registry(v) for v in subjects.BROKER_REGISTRY_VERBS],
    "svc_deployer": [subjects.deployer(v) for v in subjects.DEPLOYER_VERBS]
    + [subjects.session(v) for v in subjects.SESSION_VERBS],
    "svc_backup": [subjects.backup(v) for v in subjects.BACKUP_VERBS],
    "agent_alice": [subjects.ctl("alice", v) for v in subjects.AGENT_CTL_VERBS],
    "agent_bob": [subjects.ctl("bob", v) for v in subjects.AGENT_CTL_VERBS],
    "svc_dashboard": ["hive.dashboard.info"],
}

OPERATOR_CALLS = (
    [subjects.operator(a, v) for a, v in subjects.OPERATOR_SUBJECTS]
    + [subjects.ctl("alice", v) for v in subjects.AGENT_CTL_VERBS]
    + [subjects.deployer(v) for v in subjects.DEPLOYER_VERBS]
    + [subjects.session(v) for v in subjects.SESSION_VERBS]
    + [subjects.backup(v) for v in subjects.BACKUP_VERBS]
    + [subjects.broker("operator", "send")]
)
# Requests each user must be able to make.
ALLOWED_CALLS: dict[str, list[str]] = {
    "agent_alice": [subjects.broker("alice", v) for v in subjects.BROKER_VERBS],
    "agent_manager": [subjects.broker("manager", v) for v in subjects.BROKER_VERBS]
    + [subjects.deployer(v) for v in natsauth.MANAGER_DEPLOYER_VERBS],
    "svc_dashboard": [*OPERATOR_CALLS, "hive.dashboard.info"],
    "operator": OPERATOR_CALLS,
    "svc_broker": [subjects.deployer("list"), subjects.deployer("spawn"), subjects.ctl("alice", "state")],
    "svc_deployer": [subjects.operator("approvals", "list"), subjects.broker("operator", "send"),
                     subjects.broker_registry("upsert"), subjects.broker_registry("remove"),
                     subjects.ctl("alice", "state")],
}
# Requests each user must NOT be able to make.
DENIED_CALLS: dict[str, list[str]] = {
    "agent_alice": [
        subjects.broker("bob", "send"), subjects.broker("manager", "approve"), subjects.broker("operator", "send"),
        subjects.operator("approvals", "resolve"), subjects.operator("questions", "answer"),
        subjects.ctl("bob", "prompt"), subjects.deployer("kill"), subjects.deployer("spawn"),
        subjects.session("create"), subjects.backup("restore"), subjects.broker_registry("upsert"),
    ],
    "agent_manager": [
        subjects.broker("alice", "send"), subjects.operator("approvals", "resolve"), subjects.deployer("spawn"),
        subjects.deployer("destroy"), subjects.ctl("alice", "prompt"), subjects.backup("restore"),
    ],
    "svc_backup": [subjects.operator("approvals", "resolve"), subjects.broker("alice", "send")],
}
# Events each user must be able to publish (and what it must not).
PUBLISHES = {
    "svc_broker": [subjects.wake("alice"), subjects.BROKER_CHANGED],
    "svc_backup": [subjects.BACKUP_DONE, subjects.BACKUP_PROGRESS],
    "svc_deployer": [subjects.deployer_state("alice"), subjects.deployer_deploy("alice")],
    "agent_alice": [subjects.events("alice"), subjects.turns("alice"), subjects.presence("alice")],
}
NOT_PUBLISHES = {
    "agent_alice": [subjects.events("bob"), subjects.presence("bob"), subjects.wake("bob"),
                    subjects.deployer_state("alice"), subjects.BROKER_CHANGED, "hive.operator.anything"],
}


async def _responders(connect_as: ConnectAs) -> dict[str, list[str]]:
    """One echo responder per serving user; returns subject -> calls seen."""
    seen: dict[str, list[str]] = {}
    for user, subs in SERVES.items():
        c = await connect_as(user)
        for subject in subs:
            seen[subject] = []

            async def cb(msg: nats.aio.msg.Msg, _user: str = user) -> None:
                seen[msg.subject].append(msg.data.decode())
                await msg.respond(json.dumps({"served_by": _user}).encode())

            await c.nc.subscribe(subject, queue="q", cb=cb)
        await flush(c.nc)
        assert await c.violations(0) == [], f"{user} may not serve its own subjects"
    return seen


async def test_config_files_are_secret_and_valid(auth_home: Path) -> None:
    d = natsauth.auth_dir(auth_home)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    files = [p for p in d.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"users.json", "auth.conf", "nats-server.conf", "operator.env",
                                        "agent_alice.env", "svc_broker.env", "svc_backup.env"}
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert "is valid" in natsauth.check_config(natsauth.config_path(auth_home))
    # Idempotent: a second run keeps every password.
    before = (d / "users.json").read_text()
    natsauth.generate(auth_home, agents=("manager", "alice", "bob"))
    assert (d / "users.json").read_text() == before


async def test_every_user_can_do_its_job(connect_as: ConnectAs) -> None:
    seen = await _responders(connect_as)
    for user, calls in ALLOWED_CALLS.items():
        c = await connect_as(user)
        for subject in calls:
            reply = await c.nc.request(subject, f"from {user}".encode(), timeout=2)
            assert json.loads(reply.data)["served_by"], subject
            assert f"from {user}" in seen[subject]
        assert await c.violations(0.05) == [], user
    for user, subs in PUBLISHES.items():
        watcher = await connect_as("operator")
        got, cb = collector()
        sub = await watcher.nc.subscribe("hive.>", cb=cb)
        await flush(watcher.nc)
        c = await connect_as(user)
        for subject in subs:
            await c.nc.publish(subject, b"{}")
        assert await c.violations(0.05) == []
        await wait_for(lambda s=subs, g=got: true(set(s) <= set(g)), timeout=3)  # type: ignore[misc]
        await sub.unsubscribe()


async def test_an_agent_cannot_speak_as_another_nor_resolve_approvals(connect_as: ConnectAs) -> None:
    seen = await _responders(connect_as)
    for user, calls in DENIED_CALLS.items():
        c = await connect_as(user)
        for subject in calls:
            with pytest.raises(nats.errors.TimeoutError):
                await c.nc.request(subject, f"from {user}".encode(), timeout=0.3)
            assert f"from {user}" not in seen.get(subject, []), f"{user} reached {subject}"
        bad = await c.violations()
        assert len(bad) >= len(calls), (user, bad)
    # ...nor publish another agent's events or wake it.
    watcher = await connect_as("operator")
    got, cb = collector()
    await watcher.nc.subscribe("hive.>", cb=cb)
    await flush(watcher.nc)
    alice = await connect_as("agent_alice")
    for subject in NOT_PUBLISHES["agent_alice"]:
        await alice.nc.publish(subject, b"{}")
    await alice.nc.publish(subjects.events("alice"), b"{}")  # control: her own goes through
    await wait_for(lambda: true(subjects.events("alice") in got), timeout=3)
    assert not set(NOT_PUBLISHES["agent_alice"]) & set(got)
    assert len(await alice.violations()) == len(NOT_PUBLISHES["agent_alice"])


async def test_an_agent_cannot_read_another_agents_replies(connect_as: ConnectAs) -> None:
    await _responders(connect_as)
    alice, bob = await connect_as("agent_alice"), await connect_as("agent_bob")
    watcher = await connect_as("operator")  # a control that may see bob's events
    seen, seen_cb = collector()
    await watcher.nc.subscribe(subjects.events("bob"), cb=seen_cb)
    await flush(watcher.nc)
    stolen, cb = collector()
    for pattern in ("_INBOX_agent_bob.>", "_INBOX.>", ">", "hive.agent.bob.>", "hive.broker.>"):
        await alice.nc.subscribe(pattern, cb=cb)
    assert len(await alice.violations()) == 5
    # bob's request and its reply go through his own inbox; alice sees none of it.
    reply = await bob.nc.request(subjects.broker("bob", "recv"), b"{}", timeout=2)
    assert reply.subject.startswith("_INBOX_agent_bob.")
    await bob.nc.publish(subjects.events("bob"), b"{}")
    await flush(bob.nc)
    # barrier: the server routed bob's last publication (the control got it), so a copy for any
    # subscription of alice's was queued to her before; her round trip after that would bring it in
    await wait_for(lambda: true(subjects.events("bob") in seen), timeout=3)
    await flush(alice.nc)
    assert stolen == []


async def test_jetstream_for_backup_only(connect_as: ConnectAs) -> None:
    backup = await connect_as("svc_backup")
    js = backup.nc.jetstream()
    store = await js.create_object_store("hive-backups-test")
    await store.put("snap-1", b"x" * 200_000)
    got = await store.get("snap-1")
    assert got.data == b"x" * 200_000
    alice = await connect_as("agent_alice")
    with pytest.raises((nats.errors.TimeoutError, nats.errors.Error)):
        await alice.nc.jetstream().object_store("hive-backups-test")
    assert await alice.violations()


async def test_unknown_user_and_wrong_password_are_refused(auth_server: NatsServer) -> None:
    for kw in ({}, {"user": "agent_alice", "password": "nope"}, {"user": "mallory", "password": "x"}):
        assert await refused(auth_server.url, **kw)


async def test_issue_and_revoke_at_spawn_and_destroy(auth_home: Path, auth_server: NatsServer) -> None:
    assert natsauth.pid_path(auth_home).exists()
    env = natsauth.issue_agent(auth_home, "carol")  # reloads the running server
    assert env == {"HIVE_NATS_CREDS": str(natsauth.creds_path(auth_home, "agent_carol"))}
    creds = natsauth.resolve_credentials(env)
    assert creds is not None and creds.inbox_prefix == "_INBOX_agent_carol"

    async def connects() -> bool:
        try:
            nc = await connect_nats(auth_server.url, "carol", forever=False, credentials=creds)
        except Exception:
            collect_leaks()  # nats-py leaves a refused socket to the GC
            return False
        await nc.close()
        return True

    await wait_for(connects, timeout=5)  # the reload is asynchronous
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    nc = await nats.connect(auth_server.url, closed_cb=on_closed, allow_reconnect=False,
                            **creds.connect_options())
    await nc.publish(subjects.presence("carol"), b"{}")
    await flush(nc)
    assert natsauth.revoke_agent(auth_home, "carol") is True
    assert not natsauth.creds_path(auth_home, "agent_carol").exists()
    await asyncio.wait_for(closed.wait(), 10)  # the revoked user is cut off
    assert await refused(auth_server.url, **creds.connect_options())
    assert natsauth.revoke_agent(auth_home, "carol") is False
    assert natsauth.issue_agent(auth_home.parent / "no-auth-home", "dave") == {}  # auth off: nothing to do


def test_resolve_credentials(tmp_path: Path) -> None:
    home = tmp_path / "h"
    natsauth.generate(home)
    op = natsauth.creds_path(home, "operator")
    c = natsauth.resolve_credentials({"HIVE_NATS_CREDS": str(op)})
    assert c is not None and c.user == "operator" and c.inbox_prefix == "_INBOX_operator" and c.password
    c = natsauth.resolve_credentials({"HIVE_NATS_USER": "svc_broker", "HIVE_NATS_PASSWORD": "pw"})
    assert c is not None and c.connect_options() == {"user": "svc_broker", "password": "pw",
                                                     "inbox_prefix": "_INBOX_svc_broker"}
    c = natsauth.resolve_credentials({"HIVE_NATS_CREDS": str(op), "HIVE_NATS_INBOX_PREFIX": "_INBOX_x"})
    assert c is not None and c.inbox_prefix == "_INBOX_x"
    # The operator's file is the fallback for the CLI, never for an agent's process.
    c = natsauth.resolve_credentials({"HIVE_HOME": str(home)})
    assert c is not None and c.user == "operator"
    assert natsauth.resolve_credentials({"HIVE_HOME": str(home), "HIVE_AGENT": "alice"}) is None
    assert natsauth.resolve_credentials({"HIVE_HOME": str(home), "HIVE_NATS_CREDS": "none"}) is None
    assert natsauth.resolve_credentials({"HIVE_HOME": str(tmp_path / "other")}) is None
    jwt = tmp_path / "u.creds"
    jwt.write_text("-----BEGIN NATS USER JWT-----\nx\n------END NATS USER JWT------\n")
    c = natsauth.resolve_credentials({"HIVE_NATS_CREDS": str(jwt)})
    assert c is not None and c.connect_options() == {"user_credentials": str(jwt)}


def test_permissions_never_grant_operator_subjects_to_agents() -> None:
    for name in ("alice", "manager"):
        p = natsauth.agent_permissions(name)
        assert "hive.operator.>" in p["publish"]["deny"]
        assert not any(s.startswith(("hive.operator", "_INBOX.", ">", "hive.>")) for s in p["publish"]["allow"])
        assert [s for s in p["subscribe"]["allow"] if s.startswith("_INBOX")] == [f"_INBOX_agent_{name}.>"]
    with pytest.raises(HiveError):
        natsauth.agent_permissions("Bad.Name")


@pytest.mark.slow
async def test_services_run_with_prepare_auth_env(auth_home: Path, auth_server: NatsServer, tmp_path: Path) -> None:
    """The env `prepare_auth` returns is all a real service process needs."""
    from hivewire.settings import Settings

    setup = natsauth.prepare_auth(Settings(home=auth_home))
    assert setup.config == natsauth.config_path(auth_home)
    procs = []
    base = {"HIVE_HOME": str(auth_home), "HIVE_NATS_URL": auth_server.url, "HIVE_METRICS_ADDR": "127.0.0.1:0"}
    try:
        for short in ("broker", "deployer", "backup"):
            procs.append(ServiceProcess(short, {**base, **setup.env_for(short)}, tmp_path / "logs").start())
        procs.append(ServiceProcess("harness", {**base, "HIVE_AGENT": "manager", **setup.env_for("harness", "manager")},
                                    tmp_path / "logs").start())
        op = await connect_nats(auth_server.url, "op", forever=False,
                                credentials=natsauth.resolve_credentials(setup.env_for("operator")))
        try:
            want = {"hive-broker", "hive-deployer", "hive-backup"}
            await wait_for(lambda: _names_ok(op, want), timeout=30, interval=0.3)
            # the harness (as agent_manager) answers discovery only at its own subject
            ping = await wait_for(lambda: _ask(op, subjects.harness_srv("PING", "manager")), timeout=30, interval=0.3)
            assert ping["name"] == "hive-harness" and ping["id"] == "manager"
        finally:
            await op.close()
    except AssertionError:
        raise AssertionError("\n".join(f"--- {p.short}\n{p.log()[-1500:]}" for p in procs)) from None
    finally:
        logs = {p.short: p.log() for p in procs}
        for p in procs:
            p.stop()
    for short, text in logs.items():
        assert "Permissions Violation" not in text, (short, text[-2000:])
        assert "Authorization Violation" not in text, (short, text[-2000:])


async def _names_ok(nc: nats.aio.client.Client, want: set[str]) -> bool:
    return want <= set(await ping_names(nc))


async def _ask(nc: nats.aio.client.Client, subject: str, timeout: float = 0.5) -> dict[str, Any] | None:
    try:
        reply: dict[str, Any] = json.loads((await nc.request(subject, b"", timeout=timeout)).data)
        return reply
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
        return None


async def _gather(nc: nats.aio.client.Client, subject: str, wait: float = 0.5) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []

    async def cb(msg: nats.aio.msg.Msg) -> None:
        got.append(json.loads(msg.data))

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=cb)
    await nc.publish(subject, b"", reply=inbox)
    await asyncio.sleep(wait)
    await sub.unsubscribe()
    return got


class _Harness(MicroService):
    """What the harness registers: `hive-harness`, metadata agent=<name>, its ctl endpoints."""

    name = "hive-harness"

    def __init__(self, transport: Transport, agent: str) -> None:
        super().__init__(transport)
        self.agent = agent

    def metadata(self) -> dict[str, str]:
        return {**super().metadata(), "agent": self.agent}

    def endpoints(self) -> list[Endpoint[Any]]:
        return [Endpoint("state", subjects.ctl(self.agent, "state"), Empty, self.state)]

    async def state(self, ctx: Context, req: Empty) -> Empty:
        return Empty()


async def test_an_agent_answers_only_its_own_srv_subjects(connect_as: ConnectAs) -> None:
    """No agent can answer `$SRV` broadcasts as a fake `hive-broker`; its own harness still
    runs and is listed, through the deployer's relay, which drops a lying harness."""
    alice, bob, op = await connect_as("agent_alice"), await connect_as("agent_bob"), await connect_as("operator")
    heard, cb = collector()
    fakes = ["$SRV.PING.hive-broker", "$SRV.INFO", "$SRV.PING", "$SRV.STATS", "$SRV.INFO.hive-harness",
             "$SRV.>", subjects.harness_srv("PING", "bob"), "$SRV.PING.hive-broker.x"]
    for pattern in fakes:
        await alice.nc.subscribe(pattern, cb=cb)
    assert len(await alice.violations()) == len(fakes)
    assert not [r for r in await _gather(op.nc, "$SRV.INFO") if r.get("name") == "hive-broker"]
    assert await _ask(op.nc, "$SRV.PING.hive-broker") is None
    assert heard == []  # the requests never reached her

    # Her own harness runs under her identity, with no violation, at her own subjects.
    svc = _Harness(NatsTransport(alice.nc), "alice")
    await svc.start()
    await flush(alice.nc)  # her subscriptions are at the server before the operator asks
    info = await _ask(op.nc, subjects.harness_srv("INFO", "alice"), timeout=5)
    assert info is not None and (info["name"], info["id"]) == ("hive-harness", "alice")
    assert [e["subject"] for e in info["endpoints"]] == [subjects.ctl("alice", "state")]
    assert len(await alice.violations(0.05)) == len(fakes)  # none added by her harness
    assert not [r for r in await _gather(op.nc, "$SRV.PING") if r.get("name") == "hive-harness"]

    # bob lies at his own subject: he claims to be the broker.
    async def lie(msg: nats.aio.msg.Msg) -> None:
        await msg.respond(json.dumps({"name": "hive-broker", "id": "bob", "metadata": {"agent": "bob"}}).encode())

    await bob.nc.subscribe(subjects.harness_srv("PING", "bob"), cb=lie)
    await flush(bob.nc)
    assert await bob.violations(0.05) == []

    # The deployer relays the broadcasts to the harnesses it runs, checked.
    deployer = await connect_as("svc_deployer")
    relay = MicroRelay(NatsTransport(deployer.nc), lambda: ["alice", "bob", "carol"])
    await relay.start()
    before = FAILURES.labels("srv_relay")._value.get()
    try:
        pings = await _gather(op.nc, "$SRV.PING")
        assert [(p["name"], p["id"]) for p in pings] == [("hive-harness", "alice")]
        stats = await _gather(op.nc, "$SRV.STATS.hive-harness")
        assert [(p["name"], p["id"]) for p in stats] == [("hive-harness", "alice")]
        assert FAILURES.labels("srv_relay")._value.get() >= before + 1  # bob's lie, dropped and counted
        assert await deployer.violations(0.05) == []
    finally:
        await relay.stop()
        await svc.stop()


def test_hive_nats_config_cli(tmp_path: Path) -> None:
    env = {**os.environ, "HIVE_HOME": str(tmp_path / "h")}
    r = subprocess.run([sys.executable, "-m", "hivewire.cli", "nats-config", "-a", "alice", "--no-reload"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "agent_alice" in r.stdout
    r = subprocess.run([sys.executable, "-m", "hivewire.cli", "nats-config", "--env", "svc_broker"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "svc_broker.env" in r.stdout
    r = subprocess.run([sys.executable, "-m", "hivewire.cli", "nats-config", "--revoke", "alice", "--no-reload"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "agent_alice" not in r.stdout
    r = subprocess.run([sys.executable, "-m", "hivewire.cli", "nats-config", "-a", "Bad.Name", "--no-reload"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2

