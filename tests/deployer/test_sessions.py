"""The session API over NATS, with a fake agent command."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from hivewire.errors import HiveError
from hivewire.wire import ops
from hivewire.wire.common import Empty
from hivewire.wire.deployer import (
    SessionCleanup,
    SessionCreate,
    SessionRef,
)
from tests.support.procs import executable, wait_for

AGENT = """#!/bin/sh
echo "task: $HIVE_SESSION_TASK args: $*"
echo "result for $HIVE_SESSION_ID" > "$HIVE_SESSION_OUTPUT/result.txt"
echo "scratch" > "$HIVE_SESSION_DIR/work.txt"
case "$1" in fail) exit 3;; esac
exit 0
"""


@pytest.fixture
def fake_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = executable(tmp_path / "fake-agent", AGENT)
    monkeypatch.setenv("HIVE_SESSION_CMD", str(p))
    return p


async def test_session_api(deployer, fake_agent: Path) -> None:
    env = deployer

    call = env.client.request

    meta = {"project": "rust-cli", "requester": "voice-system", "n": 3}
    s = await call(ops.SESSION_CREATE, SessionCreate(task="Build a CLI", priority="high", metadata=meta))
    sid = s.session_id
    assert s.status == "created" and s.metadata == meta
    assert (await call(ops.SESSION_STATUS, SessionRef(session_id=sid))).status == "created"
    d = Path(s.working_dir)
    assert d == env.home / "sessions" / sid and json.loads(_read(d / "session.json"))["task"] == "Build a CLI"
    # metadata is real JSON in the db, not a string
    conn = sqlite3.connect(env.home / "deployer.sqlite")
    assert conn.execute("SELECT json_type(metadata_json, '$.n') FROM sessions").fetchone()[0] == "integer"
    conn.close()

    r = await call(ops.SESSION_START, SessionRef(session_id=sid, args=["--queen-type", "tactical"]))
    assert r.status in ("running", "completed")

    async def finished() -> str | None:
        st = (await call(ops.SESSION_STATUS, SessionRef(session_id=sid))).status
        return st if st in ("completed", "failed") else None

    assert await wait_for(finished, timeout=20) == "completed"
    out = Path((await call(ops.SESSION_OUTPUT_DIR, SessionRef(session_id=sid))).path)
    assert (out / "result.txt").read_text() == f"result for {sid}\n"
    log = Path((await call(ops.SESSION_LOG, SessionRef(session_id=sid))).path)
    assert "task: Build a CLI args: --queen-type tactical" in _read(log)
    got = await call(ops.SESSION_GET, SessionRef(session_id=sid))
    assert got.status == "completed" and got.exit_code == 0 and got.updated >= got.created
    with pytest.raises(HiveError) as err:
        await call(ops.SESSION_START, SessionRef(session_id=sid))
    assert err.value.code == "conflict"

    f = await call(ops.SESSION_CREATE, SessionCreate(task="Will fail"))
    assert f.priority == "medium"
    await call(ops.SESSION_START, SessionRef(session_id=f.session_id, args=["fail"]))
    await wait_for(lambda: _is(call, f.session_id, "failed"), timeout=20)
    idle = await call(ops.SESSION_CREATE, SessionCreate(task="Never started", priority="low"))

    lst = await call(ops.SESSION_LIST, Empty())
    assert {x.session_id: x.status for x in lst.sessions} == {sid: "completed", f.session_id: "failed",
                                                              idle.session_id: "created"}
    unknown = "00000000-0000-4000-8000-000000000000"
    assert (await call(ops.SESSION_STATUS, SessionRef(session_id=unknown))).status == "not_found"
    assert (await call(ops.SESSION_STATUS, SessionRef(session_id="../../etc"))).status == "not_found"
    for bad in (unknown, "../../etc"):
        with pytest.raises(HiveError) as err:
            await call(ops.SESSION_GET, SessionRef(session_id=bad))
        assert err.value.code in ("not_found", "bad_request")
    with pytest.raises(HiveError):
        await call(ops.SESSION_CREATE, SessionCreate(task="  "))

    # cleanup by hours: nothing is 2h old yet
    assert (await call(ops.SESSION_CLEANUP, SessionCleanup(max_age_hours=2))).removed == []
    conn = sqlite3.connect(env.home / "deployer.sqlite")
    conn.execute("UPDATE sessions SET updated=?", (time.time() - 3 * 3600,))
    conn.commit()
    conn.close()
    res = await call(ops.SESSION_CLEANUP, SessionCleanup(max_age_hours=2))
    assert sorted(res.removed) == sorted([sid, f.session_id]) and res.kept_outputs
    assert not _exists(d) and (out / "result.txt").exists()  # outputs kept unless asked
    assert (await call(ops.SESSION_STATUS, SessionRef(session_id=sid))).status == "not_found"
    assert (await call(ops.SESSION_STATUS, SessionRef(session_id=idle.session_id))).status == "created"
    # with remove_outputs, a finished session's outputs go too
    g = await call(ops.SESSION_CREATE, SessionCreate(task="again"))
    await call(ops.SESSION_START, SessionRef(session_id=g.session_id))
    await wait_for(lambda: _is(call, g.session_id, "completed"), timeout=20)
    res = await call(ops.SESSION_CLEANUP, SessionCleanup(max_age_hours=0, remove_outputs=True))
    assert res.removed == [g.session_id] and not _exists(Path(g.output_dir))


async def _is(call, sid: str, status: str) -> bool:
    return (await call(ops.SESSION_STATUS, SessionRef(session_id=sid))).status == status


def _read(p: Path) -> str:
    return p.read_text()


def _exists(p: Path) -> bool:
    return p.exists()
