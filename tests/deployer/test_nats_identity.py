"""Each agent's NATS identity: issued at spawn, revoked at destroy, its own and nobody else's.

Also: the harness's /metrics listed for Prometheus (hivewire.promsd) while it runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hive_deployer.layout import Layout
from hive_deployer.lifecycle import Agents, NullNotifier
from hive_deployer.runtimes import Launch, ProcessRuntime, Runtime
from hive_deployer.store import Store
from hivewire import natsauth, promsd
from hivewire.settings import Settings
from hivewire.wire import ops
from hivewire.wire.deployer import DestroyRequest, NameRequest, SpawnRequest
from tests.support.procs import wait_for

pytestmark = pytest.mark.slow


def agents_for(home: Path, runtime: Runtime) -> Agents:
    layout = Layout(home)
    return Agents(layout, Store(layout), runtime, Settings(home=home, nats_url="nats://127.0.0.1:1"), NullNotifier())


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(kv.decode().split("=", 1) for kv in raw if b"=" in kv)


def test_children_never_inherit_the_deployers_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HIVE_NATS_CREDS", "/somewhere/svc_deployer.env")
    monkeypatch.setenv("HIVE_NATS_USER", "svc_deployer")
    monkeypatch.setenv("HIVE_NATS_PASSWORD", "secret")
    monkeypatch.setenv("HIVE_NATS_INBOX_PREFIX", "_INBOX_svc_deployer")
    launch = Launch("x", ["true"], {"HIVE_AGENT": "x"}, tmp_path)
    env = ProcessRuntime(allow_unconfined=True).env(launch)
    assert not set(natsauth.IDENTITY_ENV) & set(env)
    launch.env["HIVE_NATS_CREDS"] = "/own.env"
    assert ProcessRuntime(allow_unconfined=True).env(launch)["HIVE_NATS_CREDS"] == "/own.env"


def test_launch_carries_the_agents_own_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HIVE_NATS_CREDS", raising=False)
    home = tmp_path / "hive"
    agents = agents_for(home, ProcessRuntime(allow_unconfined=True))
    agents.layout.make_agent_dirs("alice")
    # auth off for this HIVE_HOME: no user issued, and no fallback to anyone's file
    off = agents.launch("alice")
    assert off.env["HIVE_NATS_CREDS"] == "none" and not off.readonly
    natsauth.generate(home)
    # an applied config may set env, never the agent's NATS identity
    launch = agents.launch("alice", {"HIVE_NATS_CREDS": str(natsauth.creds_path(home, "operator")), "FOO": "1"})
    own = natsauth.creds_path(home, "agent_alice")
    assert launch.env["HIVE_NATS_CREDS"] == str(own)
    assert json.loads(launch.env["HIVE_AGENT_CONFIG_ENV"]) == {}  # FOO is not on the allowlist: refused
    assert "agent_alice" in natsauth.users(home) and own.exists()
    assert launch.readonly == [own] and launch.hidden == [home]
    # a deployer told `none` (hive up --no-auth) issues nothing
    monkeypatch.setenv("HIVE_NATS_CREDS", "none")
    assert agents.launch("bob").env["HIVE_NATS_CREDS"] == "none"
    assert "agent_bob" not in natsauth.users(home)


async def test_spawn_issues_and_destroy_revokes_the_agents_identity(
    make_deployer: object, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HIVE_NATS_CREDS", raising=False)
    natsauth.generate(settings.home)  # auth on for this HIVE_HOME (the harness cannot join the test's account)
    env = await make_deployer()  # type: ignore[operator]
    info = await env.call(ops.DEPLOYER_SPAWN, SpawnRequest(name="alice"))
    own = natsauth.creds_path(settings.home, "agent_alice")
    assert "agent_alice" in natsauth.users(settings.home) and own.exists()
    assert environ(info.pid)["HIVE_NATS_CREDS"] == str(own)
    await env.call(ops.DEPLOYER_DESTROY, DestroyRequest(name="alice"))
    assert "agent_alice" not in natsauth.users(settings.home) and not own.exists()
    assert (settings.home / "agents/alice/state").is_dir()  # a tombstone keeps its state


async def test_a_running_agents_metrics_are_listed_while_it_runs(
    make_deployer: object, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # auth off for this HIVE_HOME: the harness joins the test's own NATS account and heartbeats
    env = await make_deployer()  # type: ignore[operator]
    await env.call(ops.DEPLOYER_SPAWN, SpawnRequest(name="alice"))

    async def listed() -> str | None:
        return promsd.read_targets(promsd.sd_path(settings.home)).get("alice")

    url = await wait_for(listed, timeout=20)
    assert url == promsd.announced(settings.home / "agents/alice/state")
    assert url.startswith("http://127.0.0.1:")

    await env.call(ops.DEPLOYER_STOP, NameRequest(name="alice"))
    assert await listed() is None  # stopped on purpose: no scrape target
    await env.call(ops.DEPLOYER_START, NameRequest(name="alice"))
    assert await wait_for(listed, timeout=20)  # the new instance is listed again
    await env.call(ops.DEPLOYER_DESTROY, DestroyRequest(name="alice"))
    assert await listed() is None
