"""What a session cost (issue 24): its stream-json read into a readable log and a cost, the cost stored
on the session row (migration v2), and its ledger row kept until the ledger's stream has it, across a
deployer restart. The real-CLI run is in test_sessions_real_cli.py."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from hive_deployer import sessionout
from hive_deployer.store import MIGRATIONS
from hivewire.migrations import Migrations
from hivewire.nats_transport import NatsTransport
from hivewire.settings import Settings
from hivewire.wire import broker as wb
from hivewire.wire import ops
from hivewire.wire.deployer import SessionCreate, SessionRef, StatusReply
from tests.support.ledger import drop_ledger_stream, fresh_ledger_stream
from tests.support.procs import running, wait_for

RESULT = {"type": "result", "subtype": "success", "is_error": False, "result": "all done\nsecond line",
          "total_cost_usd": 0.25, "usage": {"input_tokens": 1000, "output_tokens": 200,
                                            "cache_read_input_tokens": 30, "cache_creation_input_tokens": 4},
          "modelUsage": {"claude-a": {"costUSD": 0.2, "contextWindow": 200000}, "claude-b": {"costUSD": 0.05},
                         "claude-c": {"costUSD": 0}}}


async def _pump(data: bytes) -> tuple[str, str, sessionout.Outcome]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    log, events, out = io.BytesIO(), io.BytesIO(), sessionout.Outcome()
    await sessionout.pump(reader, log, events, out)
    return log.getvalue().decode(), events.getvalue().decode(), out


async def test_stream_json_becomes_a_readable_log_and_a_cost() -> None:
    lines = [
        b"a plain line from stderr",
        json.dumps({"type": "system", "subtype": "init", "model": "claude-a", "cwd": "/w"}).encode(),
        json.dumps({"type": "system", "subtype": "status", "status": "requesting"}).encode(),
        json.dumps({"type": "assistant", "message": {"content": [
            {"type": "text", "text": "thinking out loud"},
            {"type": "tool_use", "name": "Write", "input": {"file_path": "/o/x", "content": "y" * 1000}}]}}).encode(),
        json.dumps({"type": "user", "message": {"content": [
            {"type": "tool_result", "is_error": True, "content": [{"type": "text", "text": "denied"}]}]}}).encode(),
        b'{"not": "an event"}',
        b"{broken json",
        json.dumps(RESULT).encode(),
    ]
    log, events, out = await _pump(b"\n".join(lines))  # the last line has no newline
    assert log.splitlines() == [
        "a plain line from stderr",
        "[session] model claude-a, cwd /w",
        "thinking out loud",
        '[tool] Write {"file_path": "/o/x", "content": "' + "y" * (sessionout.SHOW - 34) + "…",
        "[tool error] denied",
        '{"not": "an event"}',
        "{broken json",
        "[result] all done",
        "second line",
        "[cost] $0.250000 · 1234 tokens · claude-a $0.200000 · claude-b $0.050000",
    ]
    assert [json.loads(x)["type"] for x in events.splitlines()] == ["system", "system", "assistant", "user",
                                                                     "result"]
    assert out.got_result and not out.is_error and out.result_text == "all done\nsecond line"
    assert (out.cost_usd, out.tokens, out.model) == (0.25, 1234, "claude-a")
    assert out.model_costs == {"claude-a": 0.2, "claude-b": 0.05}


async def test_odd_output_is_kept_and_costs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessionout, "MAX_LINE", 1000)
    huge = b"x" * 5000
    bad = {"type": "result", "is_error": True, "result": "boom", "total_cost_usd": "NaN", "usage": None}
    log, _, out = await _pump(b"before\n" + huge + b"\nafter\n" + json.dumps(bad).encode() + b"\n")
    assert log.splitlines() == ["before", "[a line of 5000 bytes, not shown]", "after", "[result, error] boom",
                                "[cost] $0.000000 · 0 tokens"]
    assert out.got_result and out.is_error and out.cost_usd == 0.0 and out.tokens == 0
    log, _, out = await _pump(b"no json at all\n")
    assert log == "no json at all\n" and not out.got_result


def test_a_v1_deployer_db_gains_the_cost_columns(tmp_path: Path) -> None:
    path = tmp_path / "deployer.sqlite"
    v1, v2 = (Migrations("deployer", MIGRATIONS.steps[:n]) for n in (1, 2))
    conn = sqlite3.connect(path, isolation_level=None)
    v1.up(conn)
    conn.execute("INSERT INTO sessions(session_id, task, priority, status, created, updated) "
                 "VALUES ('s1', 't', 'low', 'completed', 1, 2)")
    assert [m.version for m in MIGRATIONS.up(conn)] == [2, 3]  # v3: the session's host
    row = conn.execute("SELECT cost_usd, model_costs_json, tokens, ledger_pending, host FROM sessions").fetchone()
    assert row == (0.0, "{}", 0, None, "")
    assert MIGRATIONS.down(conn) is not None  # and back: v3, then v2
    assert "host" not in {r[1] for r in conn.execute("SELECT * FROM pragma_table_info('sessions')")}
    assert v2.down(conn) is not None
    cols = {r[1] for r in conn.execute("SELECT * FROM pragma_table_info('sessions')")}
    assert "cost_usd" not in cols and "ledger_pending" not in cols
    assert conn.execute("SELECT session_id FROM sessions").fetchall() == [("s1",)]
    conn.close()


@pytest.fixture
def priced_cmd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session command that prints what the CLI's stream-json ends with."""
    p = tmp_path / "priced.sh"
    p.write_text("#!/bin/sh\necho working\nprintf '%s\\n' '" + json.dumps(RESULT) + "'\n")
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("HIVE_SESSION_CMD", str(p))


async def _pending(home: Path, sid: str) -> bytes | None:
    conn = sqlite3.connect(home / "deployer.sqlite")
    try:
        r = conn.execute("SELECT ledger_pending FROM sessions WHERE session_id=?", (sid,)).fetchone()
        return r[0] if r else None
    finally:
        conn.close()


async def test_a_session_cost_waits_for_the_ledger_across_a_deployer_restart(
        priced_cmd: None, make_deployer: Any, nats_transport: NatsTransport, settings: Settings) -> None:
    await drop_ledger_stream(nats_transport.nc)  # no ledger yet: the row cannot be published
    env = await make_deployer(with_broker=False)
    s = await env.client.request(ops.SESSION_CREATE, SessionCreate(task="price me"))
    await env.client.request(ops.SESSION_START, SessionRef(session_id=s.session_id))

    async def done() -> StatusReply | None:
        st = await env.client.request(ops.SESSION_STATUS, SessionRef(session_id=s.session_id))
        return st if st.status in ("completed", "failed") else None

    st = await wait_for(done, timeout=30)
    assert (st.status, st.cost_usd, st.tokens) == ("completed", 0.25, 1234)
    got = await env.client.request(ops.SESSION_GET, SessionRef(session_id=s.session_id))
    assert got.model_costs == {"claude-a": 0.2, "claude-b": 0.05}
    assert "[result] all done" in _text(Path(got.log_file))
    assert json.loads(_text(Path(got.working_dir, "session.json")))["cost_usd"] == 0.25
    assert await _pending(env.home, s.session_id) is not None  # kept: no stream took it
    await env.svc.stop()

    from hive_broker import build as build_broker

    async with fresh_ledger_stream(nats_transport.nc), running(build_broker, nats_transport, settings) as broker:
        await wait_for(lambda: _true(broker.ledger.ready.is_set()), timeout=30)  # type: ignore[attr-defined]
        env2 = await make_deployer(with_broker=False)  # sends what is pending at start (to this broker)

        async def in_ledger() -> wb.CostRow | None:
            rep = await env2.client.request(ops.LEDGER_COSTS, wb.CostsRequest(by="session"))
            return next((r for r in rep.rows if r.key == s.session_id), None)

        row = await wait_for(in_ledger, timeout=30)
        assert (row.cost_usd, row.tokens, row.turns) == (0.25, 1234, 1)

        async def sent() -> bool:
            return await _pending(env2.home, s.session_id) is None

        await wait_for(sent, timeout=10)
        by_model = await env2.client.request(ops.LEDGER_COSTS, wb.CostsRequest(by="model"))
        assert {r.key: r.cost_usd for r in by_model.rows} == {"claude-a": 0.2, "claude-b": 0.05}
        await env2.svc.stop()


async def _true(v: bool) -> bool:
    return v


def _text(p: Path) -> str:
    return p.read_text()
