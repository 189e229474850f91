"""The session API over NATS, with a fake agent command."""

from __future__ import annotations

import json
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from hivewire import subjects
from hivewire.errors import HiveError
from hivewire.wire.common import Empty
from hivewire.wire.deployer import (
    CleanupReply,
    PathReply,
    SessionCleanup,
    SessionCreate,
    SessionInfo,
    SessionList,
    SessionRef,
    StatusReply,
)
from tests.support.procs import wait_for

AGENT = """#!/bin/sh
echo "task: $HIVE_SESSION_TASK args: $*"
echo "result for $HIVE_SESSION_ID" > "$HIVE_SESSION_OUTPUT/result.txt"
echo "scratch" > "$HIVE_SESSION_DIR/work.txt"
case "$1" in fail) exit 3;; esac
exit 0
"""


@pytest.fixture
def fake_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = tmp_path / "fake-agent"
    p.write_text(AGENT)
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("HIVE_SESSION_CMD", str(p))
    return p


async def test_session_api(deployer, fake_agent: Path) -> None:
    env = deployer

    async def call(verb: str, req, reply):
        return await env.client.call(subjects.session(verb), req, reply)

    meta = {"project": "rust-cli", "requester": "voice-system", "n": 3}
    s = await call("create", SessionCreate(task="Build a CLI", priority="high", metadata=meta), SessionInfo)
    sid = s.session_id
    assert s.status == "created" and s.metadata == meta
    assert (await call("status", SessionRef(session_id=sid), StatusReply)).status == "created"
    d = Path(s.working_dir)
    assert d == env.home / "sessions" / sid and json.loads(_read(d / "session.json"))["task"] == "Build a CLI"
    # metadata is real JSON in the db, not a string
    conn = sqlite3.connect(env.home / "deployer.sqlite")
    assert conn.execute("SELECT json_type(metadata_json, '$.n') FROM sessions").fetchone()[0] == "integer"
    conn.close()

    r = await call("start", SessionRef(session_id=sid, args=["--queen-type", "tactical"]), StatusReply)
    assert r.status in ("running", "completed")

    async def finished() -> str | None:
        st = (await call("status", SessionRef(session_id=sid), StatusReply)).status
        return st if st in ("completed", "failed") else None

    assert await wait_for(finished, timeout=20) == "completed"
    out = Path((await call("output_dir", SessionRef(session_id=sid), PathReply)).path)
    assert (out / "result.txt").read_text() == f"result for {sid}\n"
    log = Path((await call("log", SessionRef(session_id=sid), PathReply)).path)
    assert "task: Build a CLI args: --queen-type tactical" in _read(log)
    got = await call("get", SessionRef(session_id=sid), SessionInfo)
    assert got.status == "completed" and got.exit_code == 0 and got.updated >= got.created
    with pytest.raises(HiveError) as err:
        await call("start", SessionRef(session_id=sid), StatusReply)
    assert err.value.code == "conflict"

    f = await call("create", SessionCreate(task="Will fail"), SessionInfo)
    assert f.priority == "medium"
    await call("start", SessionRef(session_id=f.session_id, args=["fail"]), StatusReply)
    await wait_for(lambda: _is(call, f.session_id, "failed"), timeout=20)
    idle = await call("create", SessionCreate(task="Never started", priority="low"), SessionInfo)

    lst = await call("list", Empty(), SessionList)
    assert {x.session_id: x.status for x in lst.sessions} == {sid: "completed", f.session_id: "failed",
                                                               idle.session_id: "created"}
    unknown = "00000000-0000-4000-8000-000000000000"
    assert (await call("status", SessionRef(session_id=unknown), StatusReply)).status == "not_found"
    assert (await call("status", SessionRef(session_id="../../etc"), StatusReply)).status == "not_found"
    for bad in (unknown, "../../etc"):
        with pytest.raises(HiveError) as err:
            await call("get", SessionRef(session_id=bad), SessionInfo)
        assert err.value.code in ("not_found", "bad_request")
    with pytest.raises(HiveError):
        await call("create", SessionCreate(task="  "), SessionInfo)

    # cleanup by hours: nothing is 2h old yet
    assert (await call("cleanup", SessionCleanup(max_age_hours=2), CleanupReply)).removed == []
    conn = sqlite3.connect(env.home / "deployer.sqlite")
    conn.execute("UPDATE sessions SET updated=?", (time.time() - 3 * 3600,))
    conn.commit()
    conn.close()
    res = await call("cleanup", SessionCleanup(max_age_hours=2), CleanupReply)
    assert sorted(res.removed) == sorted([sid, f.session_id]) and res.kept_outputs
    assert not _exists(d) and (out / "result.txt").exists()  # outputs kept unless asked
    assert (await call("status", SessionRef(session_id=sid), StatusReply)).status == "not_found"
    assert (await call("status", SessionRef(session_id=idle.session_id), StatusReply)).status == "created"
    # with remove_outputs, a finished session's outputs go too
    g = await call("create", SessionCreate(task="again"), SessionInfo)
    await call("start", SessionRef(session_id=g.session_id), StatusReply)
    await wait_for(lambda: _is(call, g.session_id, "completed"), timeout=20)
    res = await call("cleanup", SessionCleanup(max_age_hours=0, remove_outputs=True), CleanupReply)
    assert res.removed == [g.session_id] and not _exists(Path(g.output_dir))


async def _is(call, sid: str, status: str) -> bool:
    return (await call("status", SessionRef(session_id=sid), StatusReply)).status == status


def _read(p: Path) -> str:
    return p.read_text()


def _exists(p: Path) -> bool:
    return p.exists()
