"""Every lifecycle verb against real harness processes on real NATS."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from hive_deployer.lifecycle import Options
from hivewire.errors import HiveError
from hivewire.wire import ops
from hivewire.wire.agent import AgentState
from hivewire.wire.common import Empty
from hivewire.wire.deployer import AgentInfo, DestroyRequest, NameRequest, SpawnRequest
from tests.deployer.conftest import told
from tests.support.procs import wait_for

pytestmark = pytest.mark.slow


async def answers(env, name: str, timeout: float = 20.0) -> AgentState:
    return await wait_for(
        lambda: env.client.request(ops.CTL_STATE, Empty(), timeout=1, agent=name), timeout=timeout
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


async def test_spawn_and_every_verb(deployer) -> None:
    env = deployer
    info = await env.call(ops.DEPLOYER_SPAWN, SpawnRequest(name="alice"))
    assert info.state == "running" and info.pid and info.transient is None
    assert info.deployed == "deployed/0"
    assert (await answers(env, "alice")).status == "online"
    await told(env, "alice", "spawned")
    assert any(s.name == "alice" and s.state == "running" for s in env.states)
    assert any(s.name == "alice" and s.transient == "spawning" for s in env.states)
    for d in ("config", "state", "creds"):
        assert (env.home / "agents/alice" / d).is_dir()
    assert (env.home / "applied/alice/.git").is_dir()

    with pytest.raises(HiveError) as err:
        await env.call(ops.DEPLOYER_SPAWN, SpawnRequest(name="alice"))
    assert err.value.code == "conflict"

    pid1 = info.pid
    stopped = await env.call(ops.DEPLOYER_STOP, NameRequest(name="alice"))
    assert stopped.state == "stopped" and stopped.pid is None and not alive(pid1)

    started = await env.call(ops.DEPLOYER_START, NameRequest(name="alice"))
    assert started.state == "running" and started.pid != pid1
    await answers(env, "alice")

    restarted = await env.call(ops.DEPLOYER_RESTART, NameRequest(name="alice"))
    assert restarted.state == "running" and restarted.pid not in (None, started.pid)
    assert not alive(started.pid)
    await answers(env, "alice")

    rebuilt = await env.call(ops.DEPLOYER_REBUILD, NameRequest(name="alice"))
    assert rebuilt.state == "running" and rebuilt.pid != restarted.pid
    await told(env, "alice", "rebuilt")

    killed = await env.call(ops.DEPLOYER_KILL, NameRequest(name="alice"))
    assert killed.state == "stopped" and not alive(rebuilt.pid)
    await told(env, "alice", "killed")

    # a kill is on purpose: the crash watch must not bring it back
    lst = await env.call(ops.DEPLOYER_LIST, Empty())
    assert lst.agents[0].state == "stopped" and lst.agents[0].crashes == 0
    assert all(s.transient is None for s in lst.agents)


async def test_destroy_revive_keeps_state_and_purge_wipes(deployer) -> None:
    env = deployer
    await env.call(ops.DEPLOYER_SPAWN, SpawnRequest(name="bob"))
    await answers(env, "bob")
    notes = env.home / "agents/bob/state/notes.md"
    notes.write_text("remember me\n")
    (env.home / "agents/bob/creds/.credentials.json").write_text("{}")

    tomb = await env.call(ops.DEPLOYER_DESTROY, DestroyRequest(name="bob"))
    assert tomb.state == "destroyed" and tomb.pid is None
    assert tomb.has_credentials and tomb.state_bytes > 0 and tomb.destroyed_at
    assert notes.exists()
    meta = (env.home / "meta/flake.nix").read_text()
    assert "nixosConfigurations" in meta and "bob =" not in meta
    with pytest.raises(HiveError) as err:
        await env.call(ops.DEPLOYER_START, NameRequest(name="bob"))
    assert err.value.code == "conflict"

    back = await env.call(ops.DEPLOYER_REVIVE, NameRequest(name="bob"))
    assert back.state == "running" and back.destroyed_at is None and back.has_credentials
    assert notes.read_text() == "remember me\n"
    await answers(env, "bob")
    assert "bob = nixpkgs.lib.nixosSystem" in (env.home / "meta/flake.nix").read_text()

    gone = await env.call(ops.DEPLOYER_DESTROY, DestroyRequest(name="bob", purge=True))
    assert gone.purged and gone.state == "destroyed"
    assert not (env.home / "agents/bob").exists() and not (env.home / "applied/bob").exists()
    lst = await env.call(ops.DEPLOYER_LIST, Empty())
    assert lst.agents == []
    # the name is free again, with a fresh state
    again = await env.call(ops.DEPLOYER_SPAWN, SpawnRequest(name="bob"))
    assert again.state == "running" and not (env.home / "agents/bob/state/notes.md").exists()


async def test_manager_is_ensured_and_protected(make_deployer) -> None:
    env = await make_deployer(ensure_manager=True)
    lst = await env.call(ops.DEPLOYER_LIST, Empty())
    assert [a.name for a in lst.agents] == ["manager"] and lst.agents[0].state == "running"
    await answers(env, "manager")
    for purge in (False, True):
        with pytest.raises(HiveError) as err:
            await env.call(ops.DEPLOYER_DESTROY, DestroyRequest(name="manager", purge=purge))
        assert err.value.code == "forbidden"
    assert (env.home / "agents/manager/state").is_dir()
    assert "manager = nixpkgs.lib.nixosSystem" in (env.home / "meta/flake.nix").read_text()
    assert "managerBase" in (env.home / "meta/flake.nix").read_text()


@pytest.mark.parametrize("bad", ["..", "a/b", "/etc", "A", "alice\n", "", "-x", "a" * 40, "operator", "al ice"])
async def test_bad_names_refused_before_any_path(deployer, bad: str) -> None:
    env = deployer
    before = sorted(str(p) for p in env.home.rglob("*"))
    for op, req in ((ops.DEPLOYER_SPAWN, SpawnRequest(name=bad)), (ops.DEPLOYER_START, NameRequest(name=bad)),
                    (ops.DEPLOYER_DESTROY, DestroyRequest(name=bad, purge=True)),
                    (ops.DEPLOYER_REVIVE, NameRequest(name=bad))):
        verb = op.name
        with pytest.raises(HiveError) as err:
            await env.call(op, req)
        assert err.value.code in ("bad_name", "not_found") if bad == "operator" and verb != "spawn" \
            else err.value.code == "bad_name", (verb, err.value.code)
    after = sorted(str(p) for p in env.home.rglob("*"))
    assert [p for p in after if p not in before and "deployer.sqlite" not in p] == []


async def test_transient_state_clears_when_the_action_fails(make_deployer) -> None:
    env = await make_deployer()
    await env.call(ops.DEPLOYER_SPAWN, SpawnRequest(name="carol"))
    await env.call(ops.DEPLOYER_STOP, NameRequest(name="carol"))
    env.svc.agents.opts.harness_cmd = "/nonexistent/harness"
    with pytest.raises(HiveError) as err:
        await env.call(ops.DEPLOYER_START, NameRequest(name="carol"))
    assert err.value.code == "internal" and "could not start" in err.value.message
    with pytest.raises(HiveError):
        await env.call(ops.DEPLOYER_REBUILD, NameRequest(name="carol"))
    lst = await env.call(ops.DEPLOYER_LIST, Empty())
    assert lst.agents[0].transient is None and lst.agents[0].state == "stopped"
    assert "start failed" in (lst.agents[0].last_error or "")
    assert env.states[-1].transient is None
    env.svc.agents.opts.harness_cmd = ""
    assert (await env.call(ops.DEPLOYER_START, NameRequest(name="carol"))).state == "running"


async def test_kill9_is_noticed_and_restarted_by_the_crash_watch(deployer) -> None:
    env = deployer
    info = await env.call(ops.DEPLOYER_SPAWN, SpawnRequest(name="dave"))
    await answers(env, "dave")
    os.kill(info.pid, signal.SIGKILL)

    async def restarted() -> AgentInfo | None:
        a = (await env.call(ops.DEPLOYER_LIST, Empty())).agents[0]
        return a if a.state == "running" and a.pid not in (None, info.pid) else None

    again = await wait_for(restarted, timeout=20)
    assert again.crashes == 1 and again.restarts == 1
    assert any(s.state == "crashed" and s.name == "dave" for s in env.states)
    await told(env, "manager", "dave crashed")
    await answers(env, "dave")


async def test_stale_presence_counts_as_a_crash(make_deployer, tmp_path: Path) -> None:
    # a "harness" that lives but never heartbeats
    env = await make_deployer(harness_cmd="sleep 600", presence_stale_s=1.0)
    info = await env.call(ops.DEPLOYER_SPAWN, SpawnRequest(name="erin"))

    async def crashed() -> bool:
        return any(s.name == "erin" and s.state == "crashed" and "presence stale" in (s.last_error or "")
                   for s in env.states)

    await wait_for(crashed, timeout=20)
    assert not alive(info.pid)
    env.svc.agents.opts = Options(presence_stale_s=600)  # let the restart stick
    a = await wait_for(lambda: _running(env, "erin"), timeout=20)
    assert a.restarts >= 1


async def _running(env, name: str) -> AgentInfo | None:
    for a in (await env.call(ops.DEPLOYER_LIST, Empty())).agents:
        if a.name == name and a.state == "running":
            return a
    return None
