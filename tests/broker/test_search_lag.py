"""The background indexer yields to a flood of sends, within a bounded lag; a search never misses."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from hive_broker.service import BrokerService
from hivewire.config import ConfigError
from hivewire.nats_transport import NatsTransport
from hivewire.settings import Settings
from hivewire.wire import broker as w
from hivewire.wire import ops

from .conftest import FAST, Bus

# the loop's own pass runs once at start, then the tests drive the passes
BUSY = dataclasses.replace(FAST, index_s=3600.0, index_busy_rate=10.0, index_max_lag=20)


@pytest.fixture
async def busy(nats_transport: NatsTransport, settings: Settings, nats_url: str) -> AsyncIterator[
        tuple[BrokerService, Bus]]:
    svc = BrokerService(nats_transport, settings, config=BUSY)
    await svc.start()
    t = await NatsTransport.connect(nats_url, name="search-lag-test", forever=False)
    bus = Bus(t)
    await bus.register("alice", "bob")
    try:
        yield svc, bus
    finally:
        await t.close()
        await svc.stop()


async def lag(svc: BrokerService) -> int:
    return await svc.search.lag()


async def test_a_busy_pass_leaves_only_the_newest_unindexed_and_a_quiet_one_catches_up(
    busy: tuple[BrokerService, Bus],
) -> None:
    svc, bus = busy
    await svc.background._index_pass()  # starts the rate's clock
    await asyncio.gather(*(bus.send("alice", "bob", f"wombat {i}") for i in range(50)))
    assert await lag(svc) == 50
    await svc.background._index_pass()  # 50 sends just now: far above 10/s
    assert await lag(svc) == BUSY.index_max_lag
    await svc.background.refresh_gauges()
    assert REGISTRY.get_sample_value("hive_broker_search_lag_messages") == BUSY.index_max_lag
    await svc.background._index_pass()  # no send since: quiet
    assert await lag(svc) == 0
    await svc.background.refresh_gauges()
    assert REGISTRY.get_sample_value("hive_broker_search_lag_messages") == 0


async def test_a_search_during_a_flood_finds_every_message(busy: tuple[BrokerService, Bus]) -> None:
    svc, bus = busy
    await svc.background._index_pass()
    for i in range(30):
        await bus.send("alice", "bob", f"numbat {i}")
    await svc.background._index_pass()
    assert await lag(svc) == BUSY.index_max_lag  # the newest 20 wait
    found = await bus.operator(ops.MESSAGES_SEARCH, w.MessagesSearchRequest(query="numbat", limit=100))
    assert sorted(int(m.body.split()[1]) for m in found.messages) == list(range(30))
    assert await lag(svc) == 0


def test_the_knobs_come_from_the_environment() -> None:
    from hive_broker.config import BrokerConfig

    cfg = BrokerConfig.from_env({"HIVE_BROKER_INDEX_BUSY_RATE": "250", "HIVE_BROKER_INDEX_MAX_LAG": "5000"})
    assert (cfg.index_busy_rate, cfg.index_max_lag) == (250.0, 5000)
    with pytest.raises(ConfigError, match=r"^HIVE_BROKER_INDEX_MAX_LAG=lots: must be a positive integer$"):
        BrokerConfig.from_env({"HIVE_BROKER_INDEX_MAX_LAG": "lots"})
