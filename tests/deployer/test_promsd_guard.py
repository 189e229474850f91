"""The deployer lists an agent's /metrics for Prometheus only at the agent's own
loopback port: a metrics.json the agent rewrote to point elsewhere is refused,
logged and counted (`hive_deployer_failures_total{what="promsd"}`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog

from hive_deployer import metrics
from hive_deployer.layout import Layout
from hive_deployer.lifecycle import Agents, NullNotifier
from hive_deployer.runtimes import ProcessRuntime
from hive_deployer.store import Store
from hivewire import promsd
from hivewire.settings import Settings


def agents(home: Path) -> Agents:
    layout = Layout(home)
    return Agents(layout, Store(layout), ProcessRuntime(allow_unconfined=True), Settings(home=home, nats_url="nats://127.0.0.1:1"),
                  NullNotifier())


def failures() -> float:
    return float(metrics.FAILURES.labels("promsd")._value.get())


@pytest.mark.parametrize("url", ["http://169.254.169.254:80/metrics", "http://127.0.0.1:9411/api/secret"])
async def test_a_rewritten_metrics_json_is_refused(tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HIVE_PROMSD_HOST", raising=False)
    a = agents(tmp_path)
    state = a.layout.state("alice")
    state.mkdir(parents=True, exist_ok=True)
    (state / promsd.ANNOUNCE_FILE).write_text(json.dumps({"instance": "i1", "metrics_url": url}))
    before = failures()
    with structlog.testing.capture_logs() as logs:
        await a._list_metrics("alice", "i1")
    assert failures() == before + 1
    assert [e for e in logs if e["event"] == "promsd_failed" and "refused" in e["error"]]
    assert promsd.read_targets(promsd.sd_path(tmp_path)) == {}

    # control: the agent's own loopback URL is listed
    (state / promsd.ANNOUNCE_FILE).write_text(json.dumps({"instance": "i2",
                                                          "metrics_url": "http://127.0.0.1:40123/metrics"}))
    await a._list_metrics("alice", "i2")
    assert promsd.read_targets(promsd.sd_path(tmp_path)) == {"alice": "http://127.0.0.1:40123/metrics"}
    assert failures() == before + 1
