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
            sync=_sync(e),
        )


def _sync(env: dict[str, str] | os._Environ[str]) -> Literal["FULL", "NORMAL"]:
    """Unlike the numbers, a mistyped durability mode stops the broker: falling back
    to the default could silently weaken what an operator asked for."""
    value = (env.get("HIVE_BROKER_SYNC") or "normal").strip().lower()
    if value not in ("full", "normal"):
        raise ValueError(f"HIVE_BROKER_SYNC must be 'full' or 'normal', not {value!r}")
    return "FULL" if value == "full" else "NORMAL"
