"""Host-side retention of every agent's events.sqlite.

Hourly: drop rows older than `max_age_days`, then keep only the newest
`keep` rows. It runs on the host, so a misbehaving harness cannot opt out.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from hive_deployer import metrics
from hive_deployer.layout import Layout
from hivewire import config
from hivewire.db import connect

log = structlog.get_logger("hive_deployer.retention")


@dataclass(frozen=True)
class Policy:
    max_age_days: float = 7.0
    keep: int = 2000
    interval_s: float = 3600.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Policy:
        return cls(
            max_age_days=config.EVENTS_MAX_AGE_DAYS.get(env),
            keep=config.EVENTS_KEEP.get(env),
            interval_s=config.EVENTS_VACUUM_INTERVAL_S.get(env),
        )


def prune_file(path: Path, policy: Policy, now: float | None = None) -> tuple[int, int]:
    """(rows dropped for age, rows dropped for count) of one events db."""
    now = time.time() if now is None else now
    conn = connect(path)
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='events'").fetchone() is None:
            return 0, 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            aged = conn.execute("DELETE FROM events WHERE ts < ?", (now - policy.max_age_days * 86400,)).rowcount
            cut = conn.execute("SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?", (policy.keep,)).fetchone()
            trimmed = conn.execute("DELETE FROM events WHERE id <= ?", (cut[0],)).rowcount if cut else 0
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if aged + trimmed:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return aged, trimmed
    finally:
        conn.close()


def event_dbs(layout: Layout) -> list[Path]:
    """Every agent's (destroyed ones too) and every session's events db."""
    found = []
    for name in layout.existing_agent_names():
        p = layout.events_db(name)
        if p.is_file():
            found.append(p)
    if layout.sessions_root.is_dir():
        found += sorted(layout.sessions_root.glob("*/events.sqlite"))
    return found


def sweep(layout: Layout, policy: Policy) -> dict[str, tuple[int, int]]:
    out = {}
    for path in event_dbs(layout):
        try:
            aged, trimmed = prune_file(path, policy)
        except sqlite3.Error as exc:
            metrics.FAILURES.labels("retention").inc()
            log.warning("retention_failed", db=str(path), error=str(exc))
            continue
        metrics.EVENTS_PRUNED.labels("age").inc(aged)
        metrics.EVENTS_PRUNED.labels("count").inc(trimmed)
        out[str(path)] = (aged, trimmed)
        if aged or trimmed:
            log.info("events_pruned", db=str(path), aged=aged, trimmed=trimmed)
    return out
