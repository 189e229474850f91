"""Runtimes: bwrap for real (isolation + a real harness), podman/docker/nixos-container at command level."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hive_deployer.runtimes import BwrapRuntime, Launch, NixosContainerRuntime, PodmanRuntime, bwrap_works, get_runtime
from hivewire import subjects
from hivewire.wire.agent import AgentState
from hivewire.wire.common import Empty
from hivewire.wire.deployer import AgentInfo, NameRequest, SpawnRequest
from tests.support.procs import wait_for

needs_bwrap = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot create namespaces here")


def launch(tmp_path: Path, argv: list[str]) -> Launch:
    state = tmp_path / "home/agents/x/state"
    state.mkdir(parents=True)
    (tmp_path / "home/agents/x/config").mkdir()
    return Launch("x", argv, {"HIVE_AGENT": "x"}, state, writable=[state])


@needs_bwrap
def test_bwrap_isolates(tmp_path: Path) -> None:
    script = (
        'echo "pid=$$"; touch "$PWD/ok" && echo wrote-state; '
        f'touch {tmp_path}/home/agents/x/config/nope 2>/dev/null || echo config-ro; '
        'touch /usr/nope 2>/dev/null || echo host-ro; hostname'
    )
    lc = launch(tmp_path, ["sh", "-c", script])
    rt = BwrapRuntime("/usr/bin/bwrap")
    out = subprocess.run(rt.argv(lc), env=rt.env(lc), capture_output=True, text=True, check=True).stdout
    assert "wrote-state" in out and "config-ro" in out and "host-ro" in out
    assert "hive-x" in out  # own uts namespace
    assert int(out.split("pid=")[1].split()[0]) < 10  # own pid namespace
    assert (lc.cwd / "ok").exists() and not (tmp_path / "home/agents/x/config/nope").exists()
    assert get_runtime().kind == "bwrap"  # the default where bwrap works


@needs_bwrap
@pytest.mark.slow
async def test_bwrap_agent_answers_and_is_crash_watched(make_deployer) -> None:
    env = await make_deployer(runtime=BwrapRuntime("/usr/bin/bwrap"))
    info = await env.call("spawn", SpawnRequest(name="bee"), AgentInfo)
    assert info.runtime == "bwrap"
    st = await wait_for(lambda: env.client.call(subjects.ctl("bee", "state"), Empty(), AgentState, timeout=1), 20)
    assert st.status == "online"
    # the outer pid is bwrap; its pid namespace differs from ours
    kids = _descendants(info.pid)
    assert kids and any(os.readlink(f"/proc/{k}/ns/pid") != os.readlink("/proc/self/ns/pid") for k in kids)
    # kill -9 the harness inside the sandbox: the crash watch brings it back
    harness = max(kids)
    os.kill(harness, 9)

    async def back() -> bool:
        from hivewire.wire.deployer import AgentList

        a = (await env.call("list", Empty(), AgentList)).agents[0]
        return a.state == "running" and a.restarts >= 1

    await wait_for(back, timeout=30)
    stopped = await env.call("stop", NameRequest(name="bee"), AgentInfo)
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
