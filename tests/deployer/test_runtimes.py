"""Runtimes: bwrap for real (isolation + a real harness), podman/docker/nixos-container at command level."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from hive_deployer.runtimes import (
    BwrapRuntime,
    Launch,
    NixosContainerRuntime,
    PodmanRuntime,
    ProcessRuntime,
    bwrap_works,
    get_runtime,
)
from hivewire.errors import HiveError
from hivewire.wire import ops
from hivewire.wire.common import Empty
from hivewire.wire.deployer import NameRequest, SpawnRequest
from tests.support.procs import wait_for

needs_bwrap = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot create namespaces here")


def launch(tmp_path: Path, argv: list[str]) -> Launch:
    state = tmp_path / "home/agents/x/state"
    state.mkdir(parents=True)
    (tmp_path / "home/agents/x/config").mkdir()
    return Launch("x", argv, {"HIVE_AGENT": "x"}, state, writable=[state])


def test_the_default_runtime_confines_and_never_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HIVE_DEPLOYER_RUNTIME", raising=False)
    assert get_runtime().kind == "bwrap"  # also where bwrap is missing: it then fails at start
    broken = BwrapRuntime("/nonexistent/bwrap")
    why = broken.check()
    assert why is not None and "bubblewrap" in why and "HIVE_ALLOW_UNCONFINED=1" in why
    lc = Launch("x", ["hive-harness"], {"HIVE_AGENT": "x"}, Path("/"))
    assert BwrapRuntime("/usr/bin/bwrap").env(lc)["HIVE_SANDBOX"] == "bwrap"


def test_the_process_runtime_needs_an_explicit_yes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HIVE_ALLOW_UNCONFINED", raising=False)
    rt = ProcessRuntime()
    assert rt.check() is not None and "HIVE_ALLOW_UNCONFINED=1" in (rt.check() or "")
    monkeypatch.setenv("HIVE_ALLOW_UNCONFINED", "1")
    assert rt.check() is None and not rt.confined
    lc = Launch("x", ["hive-harness"], {"HIVE_AGENT": "x"}, Path("/"))
    assert rt.env(lc)["HIVE_SANDBOX"] == "none"


async def test_spawn_fails_closed_naming_the_fix(make_deployer: Any) -> None:
    env = await make_deployer(runtime=BwrapRuntime("/nonexistent/bwrap"))
    with pytest.raises(HiveError) as err:
        await env.call(ops.DEPLOYER_SPAWN, SpawnRequest(name="bee"))
    assert err.value.code == "unavailable" and "apt-get install bubblewrap" in err.value.message
    a = (await env.call(ops.DEPLOYER_LIST, Empty())).agents[0]
    assert a.state == "stopped" and a.pid is None and "bubblewrap" in (a.last_error or "")


@needs_bwrap
@pytest.mark.slow
async def test_bwrap_agent_answers_and_is_crash_watched(make_deployer) -> None:
    env = await make_deployer(runtime=BwrapRuntime("/usr/bin/bwrap"))
    info = await env.call(ops.DEPLOYER_SPAWN, SpawnRequest(name="bee"))
    assert info.runtime == "bwrap" and info.confined
    st = await wait_for(lambda: env.client.request(ops.CTL_STATE, Empty(), timeout=1, agent="bee"), 20)
    assert st.status == "online"
    # the harness runs on the host (it confines its agent CLI's turns), told to use bwrap
    environ = await asyncio.to_thread(Path(f"/proc/{info.pid}/environ").read_bytes)
    assert environ.count(b"HIVE_SANDBOX=bwrap\0") == 1
    # kill -9 the harness: the crash watch brings it back
    os.kill(info.pid, 9)

    async def back() -> bool:

        a = (await env.call(ops.DEPLOYER_LIST, Empty())).agents[0]
        return a.state == "running" and a.restarts >= 1

    await wait_for(back, timeout=30)
    stopped = await env.call(ops.DEPLOYER_STOP, NameRequest(name="bee"))
    assert stopped.state == "stopped" and not _descendants(info.pid)


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                kids = Path(f"/proc/{p}/task/{t}/children").read_text().split()
                out += [int(k) for k in kids]
                todo += [int(k) for k in kids]
        except FileNotFoundError:
            continue
    return out


def test_podman_and_docker_commands(tmp_path: Path) -> None:
    """Command level only: podman/docker cannot run on this host (honest note in the runtime)."""
    lc = launch(tmp_path, ["python", "-m", "hive_harness"])
    for binary in ("podman", "docker"):
        rt = PodmanRuntime(binary, "localhost/hive:1")
        argv = rt.argv(lc)
        assert argv[:6] == [binary, "run", "--rm", "--name", "hive-x", "--network"]
        assert f"{lc.cwd}:{lc.cwd}:rw" in argv and "HIVE_AGENT=x" in argv
        assert argv[-4:] == ["localhost/hive:1", "python", "-m", "hive_harness"]
        assert rt.stop_commands(lc) == [[binary, "stop", "-t", "8", "hive-x"]]
        assert rt.kind == binary and not rt.tested_here and "cannot run" in rt.note


def test_nixos_container_commands(tmp_path: Path) -> None:
    lc = launch(tmp_path, ["hive-harness"])
    lc.meta = tmp_path / "home/meta"
    rt = NixosContainerRuntime()
    assert rt.prepare(lc) == [
        ["nixos-container", "update", "hive-x", "--flake", f"{tmp_path}/home/meta#x"],
        ["nixos-container", "start", "hive-x"],
    ]
    assert rt.argv(lc) == ["nixos-container", "run", "hive-x", "--", "env", "HIVE_AGENT=x", "hive-harness"]
    assert rt.stop_commands(lc) == [["nixos-container", "stop", "hive-x"]]
    assert not rt.tested_here and "not available here" in rt.note


async def test_an_unconfined_agent_says_so(make_deployer: Any) -> None:
    env = await make_deployer(runtime=ProcessRuntime(allow_unconfined=True))
    info = await env.call(ops.DEPLOYER_SPAWN, SpawnRequest(name="bee"))
    assert info.runtime == "process" and info.confined is False
    listed = (await env.call(ops.DEPLOYER_LIST, Empty())).agents[0]
    assert listed.confined is False
