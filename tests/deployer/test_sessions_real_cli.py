"""Sessions running the REAL claude CLI against the Messages-API simulator.

The simulator (hive_harness.simmodel) is scripted, not a model: it answers the
CLI's requests with a `Write` tool call into the session's output dir, then a
final text. The CLI is the real one from .tools, launched by the deployer's
default session command (`$HIVE_AGENT_CMD -p <task> --output-format stream-json`
plus what lets a headless run write its output dir). With the REAL hive-broker
and its cost ledger: the session's cost (get, status) is the run's
`total_cost_usd`, and the ledger counts the session once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from hive_deployer.runtimes import BwrapRuntime
from hive_harness.simmodel import Script, SimModel, Step
from hivewire import codec, subjects
from hivewire.nats_transport import NatsTransport
from hivewire.service import MicroService
from hivewire.settings import Settings
from hivewire.wire import broker as wb
from hivewire.wire import ops
from hivewire.wire.agent import TurnStats
from hivewire.wire.deployer import SessionCreate, SessionRef
from tests.support.ledger import fresh_ledger_stream
from tests.support.procs import running, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLAUDE = ROOT / ".tools/node_modules/.bin/claude"
HIVE = str(Path(sys.executable).parent / "hive")
USAGE_KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


@pytest.fixture
def sim() -> Iterator[SimModel]:
    s = SimModel(Script()).start()
    yield s
    s.stop()


@pytest.fixture
def real_cli(hive_home: Path, tmp_path: Path, sim: SimModel, monkeypatch: pytest.MonkeyPatch) -> SimModel:
    """The env the deployer (and so its sessions) sees: the real CLI, pointed at the simulator."""
    if not CLAUDE.exists():
        pytest.skip("the claude CLI is not installed in .tools (scripts/install)")
    home = tmp_path / "userhome"
    home.mkdir()
    for k, v in {"HIVE_AGENT_CMD": str(CLAUDE), "ANTHROPIC_BASE_URL": sim.url, "ANTHROPIC_API_KEY": "sk-simulator",
                 "HOME": str(home), "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1",
                 "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}.items():
        monkeypatch.setenv(k, v)
    for k in ("HIVE_SESSION_CMD", "CLAUDE_CONFIG_DIR", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    return sim


@pytest.fixture
async def deployer(make_deployer: Any) -> Any:
    """The deployer with its default runtime: sessions run in the agents' bubblewrap sandbox."""
    # no broker of its own: the ledger test runs one on a fresh ledger stream
    return await make_deployer(runtime=BwrapRuntime(shutil.which("bwrap") or "bwrap"), with_broker=False)


async def _status(env: Any, sid: str) -> str:
    return (await env.client.request(ops.SESSION_STATUS, SessionRef(session_id=sid))).status


async def _watch_states(env: Any, sid: str, seen: list[str], stop: list[bool]) -> None:
    while not stop:
        st = await _status(env, sid)
        if not seen or seen[-1] != st:
            seen.append(st)
        await asyncio.sleep(0.02)


async def test_real_cli_session_completes_and_writes_its_output(real_cli: SimModel, deployer: Any) -> None:
    env, sim = deployer, real_cli
    assert env.svc.sessions.settings.agent_cmd == str(CLAUDE)
    req = SessionCreate(task="Summarise the hive in one file", priority="high", metadata={"requester": "voice-system"})
    s = await env.client.request(ops.SESSION_CREATE, req)
    sid, out = s.session_id, Path(s.output_dir)
    sim.script.add(
        Step(kind="tool_use", tool_name="Write", match="Summarise the hive",
             tool_input={"file_path": str(out / "summary.md"), "content": "# the hive\nbees, mostly\n"}),
        Step(kind="text", text="SESSION-DONE: wrote summary.md"),
    )
    seen: list[str] = [s.status]
    stop: list[bool] = []
    watcher = asyncio.create_task(_watch_states(env, sid, seen, stop))
    try:
        r = await env.client.request(ops.SESSION_START, SessionRef(session_id=sid))
        assert r.status in ("running", "completed")
        await wait_for(lambda: _done(env, sid), timeout=60)
    finally:
        stop.append(True)
        await watcher
    if seen[-1] != (last := await _status(env, sid)):
        seen.append(last)  # the watcher may stop between two polls, before it saw the end
    got = await env.client.request(ops.SESSION_GET, SessionRef(session_id=sid))
    log_file = Path(got.log_file)
    assert got.status == "completed" and got.exit_code == 0, _text(log_file)
    # created -> (starting ->) running -> completed, in that order and nothing else
    order = ["created", "starting", "running", "completed"]
    assert seen[0] == "created" and seen[-1] == "completed" and set(seen) <= set(order)
    assert [order.index(x) for x in seen] == sorted(order.index(x) for x in seen)
    # the CLI really ran against the simulator: it wrote the output file through its Write tool
    assert _text(out / "summary.md") == "# the hive\nbees, mostly\n"
    assert Path((await env.client.request(ops.SESSION_OUTPUT_DIR, SessionRef(session_id=sid))).path) == out
    assert "SESSION-DONE: wrote summary.md" in _text(log_file)
    main = [r for r in sim.script.requests if r.path.startswith("/v1/messages") and r.body and r.body.get("tools")]
    assert main and "Summarise the hive in one file" in json.dumps(main[0].body)
    assert str(out) in json.dumps(main[0].body)  # the CLI was told where its outputs go
    meta = json.loads(_text(Path(got.working_dir) / "session.json"))
    assert meta["status"] == "completed" and meta["metadata"] == {"requester": "voice-system"}


async def test_real_cli_session_that_fails(real_cli: SimModel, deployer: Any) -> None:
    env, sim = deployer, real_cli
    sim.script.add(Step(kind="error", status=401, match="Doomed task"))
    s = await env.client.request(ops.SESSION_CREATE, SessionCreate(task="Doomed task"))
    await env.client.request(ops.SESSION_START, SessionRef(session_id=s.session_id))
    assert await wait_for(lambda: _done(env, s.session_id), timeout=60) == "failed"
    got = await env.client.request(ops.SESSION_GET, SessionRef(session_id=s.session_id))
    assert got.exit_code not in (None, 0)
    assert _text(Path(got.log_file)).strip()  # the CLI's error is in the log
    assert _listdir(Path(got.output_dir)) == []


async def _done(env: Any, sid: str) -> str | None:
    st = await _status(env, sid)
    return st if st in ("completed", "failed") else None


def _text(p: Path) -> str:
    return p.read_text()


def _listdir(p: Path) -> list[Path]:
    return list(p.iterdir())


async def test_a_session_runs_in_the_sandbox(deployer: Any, settings: Any, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A session's command gets the agents' sandbox: its own dirs, its documented variables, no hive secret."""
    token = settings.home / "operator.token"
    token.write_text("operator-token-secret\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    snoop = bindir / "snoop.sh"
    snoop.write_text(f"#!/bin/sh\ncat {token} && echo LEAK-token\nls {settings.home}/agents && echo LEAK-home\n"
                     'env | grep -q "^HIVE_OPERATOR_TOKEN=" && echo LEAK-env\n'
                     'echo "ran $HIVE_SESSION_PRIORITY" > "$HIVE_SESSION_OUTPUT/ran"\n')
    snoop.chmod(0o755)
    monkeypatch.setenv("HIVE_SESSION_CMD", str(snoop))
    monkeypatch.setenv("HIVE_OPERATOR_TOKEN", "env-token-secret")
    env = deployer
    s = await env.client.request(ops.SESSION_CREATE, SessionCreate(task="snoop", priority="low"))
    await env.client.request(ops.SESSION_START, SessionRef(session_id=s.session_id))
    await wait_for(lambda: _done(env, s.session_id), timeout=60)
    got = await env.client.request(ops.SESSION_GET, SessionRef(session_id=s.session_id))
    log_text = _text(Path(got.log_file))
    assert got.status == "completed" and got.exit_code == 0, log_text
    assert _text(Path(s.output_dir) / "ran") == "ran low\n"
    assert "LEAK" not in log_text and "secret" not in log_text, log_text


@pytest.fixture
async def ledger_broker(nats_transport: NatsTransport, settings: Settings) -> AsyncIterator[MicroService]:
    """The REAL hive-broker in-process, its cost ledger consuming a fresh HIVE_LEDGER stream."""
    from hive_broker import build as build_broker

    async with fresh_ledger_stream(nats_transport.nc), running(build_broker, nats_transport, settings) as svc:
        await wait_for(lambda: _ready(svc), timeout=30)
        yield svc


async def _ready(svc: Any) -> bool:
    return bool(svc.ledger.ready.is_set())


async def _by_session(env: Any) -> dict[str, wb.CostRow]:
    rep = await env.client.request(ops.LEDGER_COSTS, wb.CostsRequest(by="session"))
    return {r.key: r for r in rep.rows}


async def test_real_cli_session_reports_its_cost_and_the_ledger_counts_it_once(
        real_cli: SimModel, ledger_broker: MicroService, deployer: Any, nats_transport: NatsTransport) -> None:
    env, sim = deployer, real_cli
    s = await env.client.request(ops.SESSION_CREATE, SessionCreate(task="Price the hive"))
    sid, out = s.session_id, Path(s.output_dir)
    # usage big enough that the run's dollars are far from zero and from any default answer's
    big = {"input_tokens": 120_000, "output_tokens": 3_000, "cache_read_input_tokens": 40_000,
           "cache_creation_input_tokens": 10_000}
    sim.script.add(
        Step(kind="tool_use", tool_name="Write", match="Price the hive", usage=big,
             tool_input={"file_path": str(out / "price.md"), "content": "priced\n"}),
        Step(kind="text", text="SESSION-DONE: priced", usage=big),
    )
    await env.client.request(ops.SESSION_START, SessionRef(session_id=sid))
    assert await wait_for(lambda: _done(env, sid), timeout=60) == "completed", _text(Path(s.log_file))
    got = await env.client.request(ops.SESSION_GET, SessionRef(session_id=sid))
    st = await env.client.request(ops.SESSION_STATUS, SessionRef(session_id=sid))
    # the run's own figures, read straight from the CLI's stream-json as the deployer kept it
    events = [json.loads(line) for line in _text(Path(got.working_dir) / "session.jsonl").splitlines()]
    results = [e for e in events if e.get("type") == "result"]
    assert len(results) == 1 and results[0]["is_error"] is False
    res = results[0]
    assert res["total_cost_usd"] > 0.01
    assert got.cost_usd == st.cost_usd == res["total_cost_usd"]
    assert got.model_costs == {m: mu["costUSD"] for m, mu in res["modelUsage"].items() if mu["costUSD"] > 0}
    assert got.tokens == st.tokens == sum(res["usage"][k] for k in USAGE_KEYS)
    assert got.tokens >= 2 * sum(big.values())  # both scripted answers' usage is in it
    # the session log stays readable: the result text and the dollars, not raw JSON
    log_text = _text(Path(got.log_file))
    assert "[result] SESSION-DONE: priced" in log_text and f"[cost] ${res['total_cost_usd']:.6f}" in log_text
    assert "[tool] Write" in log_text and '"type": "result"' not in log_text and '"type":"result"' not in log_text
    assert _text(out / "price.md") == "priced\n"

    async def in_ledger() -> wb.CostRow | None:
        return (await _by_session(env)).get(sid)

    row = await wait_for(in_ledger, timeout=30)
    assert row.turns == 1 and row.cost_usd == pytest.approx(got.cost_usd, rel=1e-12) and row.tokens == got.tokens
    conn = sqlite3.connect(env.home / "deployer.sqlite")
    try:  # published and acked: nothing left to send again
        assert conn.execute("SELECT ledger_pending FROM sessions WHERE session_id=?", (sid,)).fetchone() == (None,)
    finally:
        conn.close()
    # a second copy of the row past the stream's duplicate window (another message id), then a marker:
    # once the marker is in, the copy was taken too, and the session still counts once
    js = nats_transport.nc.jetstream()
    copy = TurnStats(agent="", session=sid, turn_id=f"session-{sid}", model="m", wake_from="session",
                     result_kind="ok", started_at=0, ended_at=got.updated, duration_ms=1, cost_usd=got.cost_usd)
    await js.publish(subjects.SESSION_LEDGER, codec.encode(copy), headers={"Nats-Msg-Id": "another-id"})
    marker = "00000000-0000-4000-8000-000000000000"
    await js.publish(subjects.SESSION_LEDGER, codec.encode(TurnStats(
        agent="", session=marker, turn_id=f"session-{marker}", model="m", wake_from="session", result_kind="ok",
        started_at=0, ended_at=got.updated, duration_ms=1, cost_usd=0.5)))

    async def marker_in() -> dict[str, wb.CostRow] | None:
        rows = await _by_session(env)
        return rows if marker in rows else None

    rows = await wait_for(marker_in, timeout=30)
    assert rows[sid].turns == 1 and rows[sid].cost_usd == pytest.approx(got.cost_usd, rel=1e-12)
    # the operator's `hive costs --by session` lists it
    proc = await asyncio.create_subprocess_exec(HIVE, "costs", "--by", "session", "--json",
                                                stdout=asyncio.subprocess.PIPE, env={**os.environ})
    stdout, _ = await proc.communicate()
    assert proc.returncode == 0
    listed = {r["key"]: r for r in json.loads(stdout)["rows"]}
    assert listed[sid]["turns"] == 1 and listed[sid]["cost_usd"] == pytest.approx(got.cost_usd, rel=1e-12)
