"""Broker knobs, from the environment (all optional)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal


def _num(env: dict[str, str] | os._Environ[str], key: str, default: float) -> float:
    try:
        v = float(env.get(key) or default)
    except ValueError:
        return default
    return v if v > 0 else default


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
    # FULL: an acked send survives power loss (fsync per commit batch). NORMAL: it
    # survives kill -9 of the broker (WAL in the OS cache), not an OS crash.
    sync: Literal["FULL", "NORMAL"] = "FULL"
    # a retried send with the same client id is stored once within this window (see dedup)
    dedup_window_s: float = 86400.0
    dedup_max: int = 100_000
    # when more sends arrive together, the first this many are committed and answered
    # before the rest, so their callers work while the broker stores the rest
    # (hivewire Batcher; 16 measured best at 32 agents, see benchmarks.md)
    first_turn: int = 16

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> BrokerConfig:
        e = os.environ if env is None else env
        return cls(
            inflight_timeout_s=_num(e, "HIVE_BROKER_INFLIGHT_TIMEOUT_S", 3600.0),
            retention_days=_num(e, "HIVE_BROKER_RETENTION_DAYS", 30.0),
            retention_interval_s=_num(e, "HIVE_BROKER_RETENTION_INTERVAL_S", 3600.0),
            tick_s=_num(e, "HIVE_BROKER_TICK_S", 5.0),
            gauges_s=_num(e, "HIVE_BROKER_GAUGES_S", 5.0),
            index_s=_num(e, "HIVE_BROKER_INDEX_S", 1.0),
            index_busy_rate=_num(e, "HIVE_BROKER_INDEX_BUSY_RATE", 1000.0),
            index_max_lag=int(_num(e, "HIVE_BROKER_INDEX_MAX_LAG", 100_000)),
            dedup_window_s=_num(e, "HIVE_BROKER_DEDUP_WINDOW_S", 86400.0),
            dedup_max=int(_num(e, "HIVE_BROKER_DEDUP_MAX", 100_000)),
            first_turn=int(_num(e, "HIVE_BROKER_FIRST_TURN", 16)),
            sync="NORMAL" if (e.get("HIVE_BROKER_SYNC") or "").upper() == "NORMAL" else "FULL",
        )
