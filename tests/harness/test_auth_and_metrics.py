"""The MCP bridge runs under the agent's own NATS identity; the needs-login gauge the alert rules use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from hive_harness import metrics
from hive_harness.agent_cli import CliConfig
from hive_harness.bus import Bus
from hive_harness.mcp_bridge import mcp_config
from hive_harness.store import EventStore
from hivewire import natsauth, promsd


def test_mcp_config_forwards_the_agents_nats_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in natsauth.IDENTITY_ENV:
        monkeypatch.delenv(key, raising=False)
    env = mcp_config("alice", "nats://127.0.0.1:4222", "python")["mcpServers"]["hive"]["env"]
    assert not set(natsauth.IDENTITY_ENV) & set(env)  # nothing to forward: nothing invented
    monkeypatch.setenv("HIVE_NATS_CREDS", "/home/hive/nats/creds/agent_alice.env")
    monkeypatch.setenv("HIVE_NATS_USER", "agent_alice")
    monkeypatch.setenv("HIVE_NATS_PASSWORD", "pw")
    monkeypatch.setenv("HIVE_NATS_INBOX_PREFIX", "_INBOX_agent_alice")
    env = mcp_config("alice", "nats://127.0.0.1:4222", "python")["mcpServers"]["hive"]["env"]
    assert env["HIVE_AGENT"] == "alice"
    assert {k: env[k] for k in natsauth.IDENTITY_ENV} == {
        "HIVE_NATS_CREDS": "/home/hive/nats/creds/agent_alice.env", "HIVE_NATS_USER": "agent_alice",
        "HIVE_NATS_PASSWORD": "pw", "HIVE_NATS_INBOX_PREFIX": "_INBOX_agent_alice",
    }
    # what the bridge resolves from that env is the agent, never the operator's fallback
    creds = natsauth.resolve_credentials({**env, "HIVE_NATS_CREDS": ""})
    assert creds is not None and creds.user == "agent_alice" and creds.inbox_prefix == "_INBOX_agent_alice"


def test_mcp_config_file_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_NATS_PASSWORD", "pw")
    monkeypatch.setenv("HIVE_NATS_USER", "agent_alice")
    path = CliConfig("alice", tmp_path, tmp_path / "creds", "nats://127.0.0.1:4222").write_mcp_config()
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["mcpServers"]["hive"]["env"]["HIVE_NATS_PASSWORD"] == "pw"


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


async def test_needs_login_gauge_follows_the_status(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite")
    await store.open()

    async def publish(subject: str, payload: object) -> None:
        return None

    bus = Bus("alice", tmp_path, store, publish, None)
    try:
        await bus.set_status("needs_login", "needs_login")
        assert gauge("hive_harness_needs_login") == 1.0
        await bus.set_status("online")
        assert gauge("hive_harness_needs_login") == 0.0
        await bus.set_status("needs_login", "needs_login")
        await bus.set_status("rate_limited", "rate_limit")
        assert gauge("hive_harness_needs_login") == 0.0
    finally:
        await store.close()
    assert metrics.NEEDS_LOGIN is not None


def test_metrics_url_announcement(tmp_path: Path) -> None:
    assert promsd.announced(tmp_path) is None
    promsd.announce(tmp_path, "inst1", "http://127.0.0.1:40001/metrics")
    assert promsd.announced(tmp_path, "inst1") == "http://127.0.0.1:40001/metrics"
    assert promsd.announced(tmp_path, "inst2") is None  # an older instance's file is not trusted
    assert promsd.announced(tmp_path) == "http://127.0.0.1:40001/metrics"
