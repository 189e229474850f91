"""Sessions (seed 004) running the REAL claude CLI against the Messages-API simulator.

The simulator (hive_harness.simmodel) is scripted, not a model: it answers the
CLI's requests with a `Write` tool call into the session's output dir, then a
final text. The CLI is the real one from .tools, launched by the deployer's
default session command (`$HIVE_AGENT_CMD -p <task>` plus what lets a headless
run write its output dir).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hive_deployer.runtimes import BwrapRuntime
from hive_harness.simmodel import Script, SimModel, Step
from hivewire import subjects
from hivewire.wire.deployer import PathReply, SessionCreate, SessionInfo, SessionRef, StatusReply
from tests.support.procs import wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLAUDE = ROOT / ".tools/node_modules/.bin/claude"


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
    return await make_deployer(runtime=BwrapRuntime(shutil.which("bwrap") or "bwrap"))


async def _status(env: Any, sid: str) -> str:
    return (await env.client.call(subjects.session("status"), SessionRef(session_id=sid), StatusReply)).status


async def _watch_states(env: Any, sid: str, seen: list[str], stop: list[bool]) -> None:
    while not stop:
        st = await _status(env, sid)
        if not seen or seen[-1] != st:
            seen.append(st)
        await asyncio.sleep(0.02)


async def test_real_cli_session_completes_and_writes_its_output(real_cli: SimModel, deployer: Any) -> None:
    env, sim = deployer, real_cli
    assert env.svc.sessions.settings.agent_cmd == str(CLAUDE)
    s = await env.client.call(subjects.session("create"),
                              SessionCreate(task="Summarise the hive in one file", priority="high",
                                            metadata={"requester": "voice-system"}), SessionInfo)
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
        r = await env.client.call(subjects.session("start"), SessionRef(session_id=sid), StatusReply)
        assert r.status in ("running", "completed")
        await wait_for(lambda: _done(env, sid), timeout=60)
    finally:
        stop.append(True)
        await watcher
    if seen[-1] != (last := await _status(env, sid)):
        seen.append(last)  # the watcher may stop between two polls, before it saw the end
    got = await env.client.call(subjects.session("get"), SessionRef(session_id=sid), SessionInfo)
    log_file = Path(got.log_file)
    assert got.status == "completed" and got.exit_code == 0, _text(log_file)
    # created -> (starting ->) running -> completed, in that order and nothing else
    order = ["created", "starting", "running", "completed"]
    assert seen[0] == "created" and seen[-1] == "completed" and set(seen) <= set(order)
    assert [order.index(x) for x in seen] == sorted(order.index(x) for x in seen)
    # the CLI really ran against the simulator: it wrote the output file through its Write tool
    assert _text(out / "summary.md") == "# the hive\nbees, mostly\n"
    assert Path((await env.client.call(subjects.session("output_dir"), SessionRef(session_id=sid),
                                       PathReply)).path) == out
    assert "SESSION-DONE: wrote summary.md" in _text(log_file)
    main = [r for r in sim.script.requests if r.path.startswith("/v1/messages") and r.body and r.body.get("tools")]
    assert main and "Summarise the hive in one file" in json.dumps(main[0].body)
    assert str(out) in json.dumps(main[0].body)  # the CLI was told where its outputs go
    meta = json.loads(_text(Path(got.working_dir) / "session.json"))
    assert meta["status"] == "completed" and meta["metadata"] == {"requester": "voice-system"}


async def test_real_cli_session_that_fails(real_cli: SimModel, deployer: Any) -> None:
    env, sim = deployer, real_cli
    sim.script.add(Step(kind="error", status=401, match="Doomed task"))
    s = await env.client.call(subjects.session("create"), SessionCreate(task="Doomed task"), SessionInfo)
    await env.client.call(subjects.session("start"), SessionRef(session_id=s.session_id), StatusReply)
    assert await wait_for(lambda: _done(env, s.session_id), timeout=60) == "failed"
    got = await env.client.call(subjects.session("get"), SessionRef(session_id=s.session_id), SessionInfo)
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
    s = await env.client.call(subjects.session("create"), SessionCreate(task="snoop", priority="low"), SessionInfo)
    await env.client.call(subjects.session("start"), SessionRef(session_id=s.session_id), StatusReply)
    await wait_for(lambda: _done(env, s.session_id), timeout=60)
    got = await env.client.call(subjects.session("get"), SessionRef(session_id=s.session_id), SessionInfo)
    log_text = _text(Path(got.log_file))
    assert got.status == "completed" and got.exit_code == 0, log_text
    assert _text(Path(s.output_dir) / "ran") == "ran low\n"
    assert "LEAK" not in log_text and "secret" not in log_text, log_text
