"""The approval flow with real git: pure functions first, then through NATS with a real harness."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from hive_deployer import git, repos
from hive_deployer.layout import Layout
from hivewire.errors import HiveError
from hivewire.wire import ops
from hivewire.wire.common import Empty
from hivewire.wire.deployer import (
    AgentInfo,
    DeployRequest,
    NameRequest,
    SpawnRequest,
)
from tests.deployer.conftest import told
from tests.support.procs import wait_for

NIX = "/usr/bin/nix-instantiate"


def commit(repo: Path, files: dict[str, str], msg: str) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    return git.commit_all(repo, msg)


def parses(path: Path) -> bool:
    return subprocess.run([NIX, "--parse", str(path)], capture_output=True).returncode == 0


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(x.decode().split("=", 1) for x in raw if b"=" in x)


def config_env(pid: int) -> dict[str, str]:
    """The agent's `hive.env` as its harness got it (for its sandboxed CLI only)."""
    got: dict[str, str] = json.loads(environ(pid)["HIVE_AGENT_CONFIG_ENV"])
    return got


@pytest.fixture(autouse=True)
def _allow_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_SANDBOX_ENV_ALLOW", "AGENT_PROFILE")  # an operator's own addition to the allowlist


def test_pure_approval_flow(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    layout.make_agent_dirs("alice")
    first = repos.first_deploy(layout, "alice")
    assert git.tags(layout.applied("alice")) == [f"{k}/0" for k in ("approved", "building", "deployed", "proposal")]
    cfg = layout.config("alice")
    assert (cfg / "agent.nix").exists() and parses(cfg / "agent.nix") and parses(cfg / "flake.nix")

    sha = commit(cfg, {"hive.env": "HIVE_X=2\n"}, "x=2")
    assert repos.propose(layout, "alice", sha[:10], "7") == sha
    # a later edit of the config repo cannot change what gets built
    commit(cfg, {"hive.env": "HIVE_X=3\n"}, "x=3")
    assert repos.approve(layout, "alice", "7") == sha
    assert repos.mark_deployed(layout, "alice", "7") == sha
    assert repos.stages(layout, "alice", "7") == ["proposal", "approved", "building", "deployed"]
    assert repos.read_env(layout.applied("alice")) == {"HIVE_X": "2"}
    entries = [repos.MetaEntry("alice", "deployed/7", sha, layout.applied("alice")),
               repos.MetaEntry("manager", "deployed/0", first, layout.applied("alice"))]
    repos.write_meta(layout, entries, f"deploy alice deployed/7 {sha[:12]}", "path:/x")
    assert git.log_subjects(layout.meta, 1) == [f"deploy alice deployed/7 {sha[:12]}"]
    flake = (layout.meta / "flake.nix").read_text()
    assert parses(layout.meta / "flake.nix")
    assert flake.count("nixpkgs.lib.nixosSystem") == 2 and '"agent-alice".url' in flake and sha in flake

    sha2 = commit(cfg, {"agent.nix": "{ broken"}, "broken")
    repos.propose(layout, "alice", sha2, "8")
    repos.deny(layout, "alice", "8", "no thanks")
    assert repos.stages(layout, "alice", "8") == ["proposal", "denied"]
    assert "no thanks" in git.tag_message(layout.applied("alice"), "denied/8")

    with pytest.raises(HiveError) as err:
        repos.propose(layout, "alice", "not-a-sha", "9")
    assert err.value.code == "bad_request"
    with pytest.raises(HiveError) as err:
        repos.propose(layout, "alice", "deadbeef", "9")
    assert err.value.code == "not_found"
    assert repos.check_tree(layout.config("alice"))  # the broken agent.nix is reported
    assert repos.deploy_id("12/../x") == "12-..-x"


async def test_approve_path_over_nats(deployer) -> None:
    env = deployer
    info = await env.call(ops.DEPLOYER_SPAWN, SpawnRequest(name="alice"))
    cfg = env.home / "agents/alice/config"
    sha = commit(cfg, {"hive.env": "AGENT_PROFILE=v2\n"}, "profile v2")

    prop = await env.call(ops.DEPLOYER_PROPOSE, DeployRequest(name="alice", id="41", commit_ref=sha[:8]))
    assert prop.outcome == "proposed" and prop.sha == sha
    done = await env.call(ops.DEPLOYER_APPROVE, DeployRequest(name="alice", id="41"))
    assert done.outcome == "deployed", done.error
    assert done.tags == ["proposal/41", "approved/41", "building/41", "deployed/41"]
    assert git.log_subjects(env.home / "meta", 1) == [f"deploy alice deployed/41 {sha[:12]}"]
    assert parses(env.home / "meta/flake.nix")
    assert git.head(env.home / "applied/alice") == sha

    agents = await env.call(ops.DEPLOYER_LIST, Empty())
    a = agents.agents[0]
    assert a.deployed == "deployed/41" and a.pid != info.pid and a.state == "running"
    assert config_env(a.pid)["AGENT_PROFILE"] == "v2" and environ(a.pid)["HIVE_DEPLOYED_REV"] == sha
    await told(env, "manager", "deployed/41")  # (system messages are queued: the reply came first)
    await told(env, "alice", "deployed/41")

    # a failing build: failed/<id> with the error, the previous deploy still running, untouched
    bad = commit(cfg, {"agent.nix": "{ this is = not nix"}, "broken")
    failed = await env.call(ops.DEPLOYER_APPROVE, DeployRequest(name="alice", id="42", commit_ref=bad))
    assert failed.outcome == "failed" and "agent.nix" in (failed.error or "")
    assert failed.tags == ["proposal/42", "approved/42", "building/42", "failed/42"]
    assert "agent.nix" in git.tag_message(env.home / "applied/alice", "failed/42")
    b = (await env.call(ops.DEPLOYER_LIST, Empty())).agents[0]
    assert b.pid == a.pid and b.deployed == "deployed/41" and b.state == "running" and b.transient is None
    assert git.head(env.home / "applied/alice") == sha
    assert git.log_subjects(env.home / "meta", 1) == [f"deploy alice deployed/41 {sha[:12]}"]

    # a config env cannot steer the harness: loader/interpreter hooks and hive settings never pass
    env.svc.deploys.probe_timeout = 3
    good_nix = repos.AGENT_NIX.format(name="alice")
    steer = commit(cfg, {"agent.nix": good_nix, "hive.env": "HIVE_NATS_URL=nats://127.0.0.1:1\nPYTHONHOME=/x\n"},
                   "steer the harness")
    ok = await env.call(ops.DEPLOYER_APPROVE, DeployRequest(name="alice", id="50", commit_ref=steer))
    assert ok.outcome == "deployed", ok.error
    c = (await env.call(ops.DEPLOYER_LIST, Empty())).agents[0]
    assert "PYTHONHOME" not in environ(c.pid) and environ(c.pid)["HIVE_NATS_URL"] != "nats://127.0.0.1:1"
    assert config_env(c.pid) == {}

    # a runtime failure (the new deploy does not come up) restores the previous deploy
    harness_cmd = env.svc.agents.opts.harness_cmd
    env.svc.agents.opts.harness_cmd = "false"
    try:
        again = commit(cfg, {"hive.env": "AGENT_PROFILE=v4\n"}, "v4")
        rt = await env.call(ops.DEPLOYER_APPROVE, DeployRequest(name="alice", id="51", commit_ref=again))
    finally:
        env.svc.agents.opts.harness_cmd = harness_cmd
    assert rt.outcome == "failed" and "runtime" in (rt.error or "")

    async def restored() -> AgentInfo | None:  # the restart that puts deployed/43 back (crash watch, backoff)
        d = (await env.call(ops.DEPLOYER_LIST, Empty())).agents[0]
        return d if d.state == "running" and d.pid else None

    d = await wait_for(restored, timeout=20)
    assert d.deployed == "deployed/50" and environ(d.pid or 0)["HIVE_DEPLOYED_REV"] == steer

    # deny
    other = commit(cfg, {"hive.env": "AGENT_PROFILE=v3\n"}, "v3")
    await env.call(ops.DEPLOYER_PROPOSE, DeployRequest(name="alice", id="44", commit_ref=other))
    denied = await env.call(ops.DEPLOYER_DENY, DeployRequest(name="alice", id="44", note="not now"))
    assert denied.outcome == "denied" and denied.tags == ["proposal/44", "denied/44"]
    with pytest.raises(HiveError) as err:
        await env.call(ops.DEPLOYER_APPROVE, DeployRequest(name="alice", id="44"))
    assert err.value.code == "conflict"

    # init_config for a future agent: the template, committed
    await env.call(ops.DEPLOYER_INIT_CONFIG, NameRequest(name="zed"))
    assert git.head(env.home / "agents/zed/config") and parses(env.home / "agents/zed/config/agent.nix")
