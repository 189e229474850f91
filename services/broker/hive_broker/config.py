"""Broker knobs, from the environment (all optional; declared in hivewire.config)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from hivewire import config


@dataclass(frozen=True)
class BrokerConfig:
    # in flight this long without an ack: put back for redelivery
    inflight_timeout_s: float = 3600.0
    # retention: acked messages older than this many days go, checked every interval
    retention_days: float = 30.0
    retention_interval_s: float = 3600.0
    # the scheduler never sleeps longer than this (reminders/questions are also kicked)
    tick_s: float = 5.0
    # how often gauges (inbox depth, pending approvals, ...) are refreshed
    gauges_s: float = 5.0
    # new messages become searchable within this long (a search also indexes first)
    index_s: float = 1.0
    # while sends arrive faster than this per second, that indexing waits (sends first)
    # until the index lags index_max_lag messages behind; a search still indexes first
    index_busy_rate: float = 1000.0
    index_max_lag: int = 100_000
    # NORMAL (HIVE_BROKER_SYNC=normal, the default): a send is committed to the WAL
    # before its reply, so an acked send survives kill -9 of the broker at any moment;
    # the WAL reaches the disk at the reader's checkpoint every second, so an OS crash
    # or power loss can cost the last ~second of acked sends. FULL: an fsync per commit
    # batch before any reply, so not even power loss can; ~15% fewer sends/s in the
    # flood benchmark (docs/broker.md, "Durability mode").
    sync: Literal["FULL", "NORMAL"] = "NORMAL"
    # a retried send with the same client id is stored once within this window (see dedup)
    dedup_window_s: float = 86400.0
    dedup_max: int = 100_000
    # when more sends arrive together, the first this many are committed and answered
    # before the rest, so their callers work while the broker stores the rest
    # (hivewire Batcher; 16 measured best at 32 agents, see benchmarks.md)
    first_turn: int = 16

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BrokerConfig:
        """Each knob is a `HIVE_BROKER_*` variable declared in hivewire.config; a value it
        does not accept (a typo, zero, a negative) raises ConfigError, which stops the broker:
        running on a default instead could silently weaken what an operator asked for."""
        e = os.environ if env is None else env
        return cls(
            inflight_timeout_s=config.BROKER_INFLIGHT_TIMEOUT_S.get(e),
            retention_days=config.BROKER_RETENTION_DAYS.get(e),
            retention_interval_s=config.BROKER_RETENTION_INTERVAL_S.get(e),
            tick_s=config.BROKER_TICK_S.get(e),
            gauges_s=config.BROKER_GAUGES_S.get(e),
            index_s=config.BROKER_INDEX_S.get(e),
            index_busy_rate=config.BROKER_INDEX_BUSY_RATE.get(e),
            index_max_lag=config.BROKER_INDEX_MAX_LAG.get(e),
            dedup_window_s=config.BROKER_DEDUP_WINDOW_S.get(e),
            dedup_max=config.BROKER_DEDUP_MAX.get(e),
            first_turn=config.BROKER_FIRST_TURN.get(e),
            sync="FULL" if config.BROKER_SYNC.get(e) == "full" else "NORMAL",
        )
