"""Every turn row reaches the swarm's cost ledger, durably (docs/costs.md).

The row is queued in `turn-stats.sqlite`'s `ledger_outbox` in the same
transaction as the turn_stats row itself (TurnStatsStore.record), then
published with JetStream on `hive.agent.<me>.ledger` (captured by the
`HIVE_LEDGER` stream the ledger owner creates) with `Nats-Msg-Id: <turn id>`,
and deleted from the outbox once the stream acknowledged it. A row whose
publish failed (no stream yet, nats-server restarting, timeout) stays queued
and is sent again later, oldest first; the stream's duplicate window and the
ledger's unique turn id make a resend count once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from typing import Any

import structlog

from hive_harness import metrics
from hivewire.wire import ops

log = structlog.get_logger("hive_harness.ledgerpub")

LEDGER_OUTBOX_SQL = """CREATE TABLE IF NOT EXISTS ledger_outbox (
    turn_id TEXT PRIMARY KEY,
    payload BLOB NOT NULL,
    queued_at REAL NOT NULL
)"""
BATCH = 100
RETRY_MIN_S, RETRY_MAX_S = 1.0, 30.0
PUBLISH_TIMEOUT_S = 5.0


def queue_for_ledger(conn: sqlite3.Connection, turn_id: str, payload: bytes) -> None:
    """Inside the transaction that records the turn row."""
    conn.execute("INSERT OR IGNORE INTO ledger_outbox(turn_id, payload, queued_at) VALUES (?, ?, ?)",
                 (turn_id, payload, time.time()))


def _delete(conn: sqlite3.Connection, ids: list[tuple[str]]) -> None:
    conn.executemany("DELETE FROM ledger_outbox WHERE turn_id = ?", ids)


class LedgerPublisher:
    """Drains the outbox to JetStream: kicked after each turn, retried with backoff."""

    def __init__(self, nc: Any, db: Any, agent: str) -> None:
        self.nc = nc  # the raw nats-py client (None on a MemoryTransport: nothing leaves)
        self.db = db  # hivewire Database of turn-stats.sqlite (None: the store did not open)
        self.subject = ops.LEDGER.subject_for(agent=agent)
        self.kicked = asyncio.Event()
        self.sent = 0

    def kick(self) -> None:
        self.kicked.set()

    async def pending(self) -> int:
        if self.db is None:
            return 0
        return int(await self.db.read(lambda c: c.execute("SELECT COUNT(*) FROM ledger_outbox").fetchone()[0]))

    async def flush(self) -> bool:
        """Publish what is queued; True when the outbox is empty."""
        if self.db is None or self.nc is None:
            return True
        js = self.nc.jetstream()
        while True:
            rows = await self.db.read(lambda c: c.execute(
                "SELECT turn_id, payload FROM ledger_outbox ORDER BY queued_at LIMIT ?", (BATCH,)).fetchall())
            if not rows:
                return True
            done: list[str] = []
            try:
                for r in rows:
                    await js.publish(self.subject, bytes(r["payload"]), timeout=PUBLISH_TIMEOUT_S,
                                     headers={"Nats-Msg-Id": r["turn_id"]})
                    done.append(r["turn_id"])
            except Exception as exc:  # no stream yet / server away: keep them queued
                metrics.FAILURES.labels("ledger_publish").inc()
                log.warning("ledger_publish_failed", queued=len(rows) - len(done), error=str(exc))
                return False
            finally:
                if done:
                    await self.db.write(functools.partial(_delete, ids=[(t,) for t in done]))
                    self.sent += len(done)

    async def run(self) -> None:
        delay = RETRY_MIN_S
        while True:
            self.kicked.clear()
            try:
                ok = await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store itself failed: log, retry later
                metrics.FAILURES.labels("ledger_outbox").inc()
                log.error("ledger_outbox_failed", error=str(exc))
                ok = False
            delay = RETRY_MIN_S if ok else min(delay * 2, RETRY_MAX_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.kicked.wait(), None if ok else delay)
