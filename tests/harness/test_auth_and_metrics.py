"""The needs-login gauge the alert rules use; the harness's metrics announcement."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from hive_harness import metrics
from hive_harness.bus import Bus
from hive_harness.store import EventStore
from hivewire import promsd


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


async def test_needs_login_gauge_follows_the_status(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite")
    await store.open()

    async def publish(op: object, payload: object, **params: str) -> None:
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
