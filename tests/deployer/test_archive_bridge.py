"""Export/import onto a fresh HIVE_HOME, and approvals executed from a (fake) broker."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hive_deployer import git
from hivewire import codec, subjects
from hivewire.errors import HiveError
from hivewire.wire import ops
from hivewire.wire.broker import Approval, ApprovalsListReply, ApprovalsListRequest, Changed
from hivewire.wire.common import Empty
from hivewire.wire.deployer import (
    DeployEvent,
    ExportRequest,
    ImportRequest,
    NameRequest,
    SpawnRequest,
)
from tests.support.procs import wait_for


@pytest.mark.slow
async def test_export_then_import_on_a_fresh_home(make_deployer, tmp_path: Path) -> None:
    src = await make_deployer()
    await src.call(ops.DEPLOYER_SPAWN, SpawnRequest(name="alice"))
    db = src.home / "agents/alice/state/turn-stats.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(500)])
    conn.commit()  # left open: the export copies it online (rows still only in the WAL)
    (src.home / "agents/alice/state/notes.md").write_text("hello\n")
    (src.home / "agents/alice/creds/secret.json").write_text("{}")
    archive = tmp_path / "out/alice.tar.gz"
    rep = await src.call(ops.DEPLOYER_EXPORT, ExportRequest(name="alice", path=str(archive)))
    assert rep.bytes > 0 and archive.is_file()
    conn.close()
    await src.svc.stop()

    fresh = tmp_path / "fresh-home"
    dst = await make_deployer(home=fresh)
    info = await dst.call(ops.DEPLOYER_IMPORT, ImportRequest(path=str(archive)))
    assert info.name == "alice" and info.state == "stopped" and not info.has_credentials
    c2 = sqlite3.connect(fresh / "agents/alice/state/turn-stats.sqlite")
    assert c2.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 500
    c2.close()
    assert (fresh / "agents/alice/state/notes.md").read_text() == "hello\n"
    assert git.tags(fresh / "applied/alice", "deployed/*") == ["deployed/0"]
    assert "alice = nixpkgs.lib.nixosSystem" in (fresh / "meta/flake.nix").read_text()

    with pytest.raises(HiveError) as err:
        await dst.call(ops.DEPLOYER_IMPORT, ImportRequest(path=str(archive)))
    assert err.value.code == "conflict"
    renamed = await dst.call(ops.DEPLOYER_IMPORT, ImportRequest(path=str(archive), name="alice2"))
    assert renamed.name == "alice2" and (fresh / "agents/alice2/state/notes.md").exists()
    (fresh / "agents/alice/state/notes.md").write_text("changed\n")
    forced = await dst.call(ops.DEPLOYER_IMPORT, ImportRequest(path=str(archive), force=True))
    assert forced.state == "stopped" and (fresh / "agents/alice/state/notes.md").read_text() == "hello\n"
    started = await dst.call(ops.DEPLOYER_START, NameRequest(name="alice"))
    assert started.state == "running"
    with pytest.raises(HiveError) as err:
        await dst.call(ops.DEPLOYER_IMPORT, ImportRequest(path=str(archive), name="../x"))
    assert err.value.code == "bad_name"


class FakeApprovals:
    def __init__(self) -> None:
        self.items: list[Approval] = []

    async def on_list(self, msg: Any, nc: Any) -> None:
        req = codec.decode(msg.data, ApprovalsListRequest)
        got = [a for a in self.items if req.status in ("all", a.status)]
        await nc.publish(msg.reply, codec.encode(ApprovalsListReply(approvals=got)))


@pytest.mark.slow
async def test_approvals_from_the_broker_are_executed(deployer, nats_transport) -> None:
    env, nc = deployer, nats_transport.nc
    fake = FakeApprovals()

    async def on_list(m: Any) -> None:
        await fake.on_list(m, nc)

    await nc.subscribe(subjects.operator("approvals", "list"), cb=on_list)
    events: list[DeployEvent] = []

    async def on_event(m: Any) -> None:
        events.append(codec.decode(m.data, DeployEvent))

    await nc.subscribe(subjects.DEPLOYER_DEPLOY_ALL, cb=on_event)

    async def changed(aid: str) -> None:
        await nc.publish(subjects.BROKER_CHANGED, codec.encode(Changed(table="approvals", id=aid, op="update")))

    # an approved spawn from the manager
    fake.items.append(Approval(approval_id="1", agent="bob", kind="spawn", requested_by="manager", requested_at=1,
                               status="approved"))
    await changed("1")
    ev = await wait_for(lambda: _event(events, "1"), timeout=20)
    assert ev.outcome == "deployed"
    assert [a.name for a in (await env.call(ops.DEPLOYER_LIST, Empty())).agents] == ["bob"]

    # apply_commit: pending -> proposal tag at once; approved -> deployed
    cfg = env.home / "agents/bob/config"
    (cfg / "hive.env").write_text("AGENT_PROFILE=from-broker\n")
    sha = git.commit_all(cfg, "profile")
    fake.items.append(Approval(approval_id="2", agent="bob", kind="apply_commit", requested_by="manager",
                               requested_at=2, status="pending", commit_ref=sha))
    await changed("2")
    await wait_for(lambda: _has_tag(env.home / "applied/bob", "proposal/2"), timeout=20)
    fake.items[-1].status = "approved"
    await changed("2")
    ev = await wait_for(lambda: _event(events, "2"), timeout=30)
    assert ev.outcome == "deployed" and ev.sha == sha
    assert git.log_subjects(env.home / "meta", 1) == [f"deploy bob deployed/2 {sha[:12]}"]

    # denied -> denied tag
    (cfg / "hive.env").write_text("AGENT_PROFILE=nope\n")
    sha3 = git.commit_all(cfg, "nope")
    fake.items.append(Approval(approval_id="3", agent="bob", kind="apply_commit", requested_by="manager",
                               requested_at=3, status="pending", commit_ref=sha3))
    await changed("3")
    await wait_for(lambda: _has_tag(env.home / "applied/bob", "proposal/3"), timeout=20)
    fake.items[-1].status = "denied"
    fake.items[-1].note = "too risky"
    await changed("3")
    ev = await wait_for(lambda: _event(events, "3"), timeout=20)
    assert ev.outcome == "denied"
    assert "too risky" in git.tag_message(env.home / "applied/bob", "denied/3")


async def _event(events: list[DeployEvent], aid: str) -> DeployEvent | None:
    return next((e for e in events if e.approval_id == aid), None)


async def _has_tag(repo: Path, tag: str) -> bool:
    return git.is_repo(repo) and tag in git.tags(repo)
