"""The broker's background loops: scheduler, in-flight timeouts, retention, gauges.

Each pass works in bounded batches (one transaction each) and yields between
them, so a backlog (the broker was down for a day) never blocks requests.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from hive_broker import approvals, messages, metrics, questions, reminders, retention, search_index
from hive_broker.config import BrokerConfig
from hive_broker.effects import Effects
from hive_broker.search_index import SearchIndex
from hive_broker.store import BrokerDatabase
from hivewire.tasks import cancel_and_wait

log = structlog.get_logger("hive_broker.background")


class Host(Protocol):
    """What the loops need of the service (the service is one; a layer below it, so
    this module never imports the service)."""

    @property
    def db(self) -> BrokerDatabase: ...
    @property
    def search(self) -> SearchIndex: ...
    @property
    def config(self) -> BrokerConfig: ...
    @property
    def sends_counted(self) -> int:
        """Sends handled since start (the indexer yields while they pour in)."""
        ...

    async def announce(self, eff: Effects) -> None:
        """Publish what a committed write changed (wakes, change events)."""
        ...


class Background:
    def __init__(self, svc: Host) -> None:
        self.svc = svc
        self._kick = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._seen_agents: set[str] = set()
        self._last_stale_check = 0.0
        self._index_at, self._index_sends = time.monotonic(), 0  # the last index pass, for the send rate

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop("scheduler", self._scheduler_pass, self._scheduler_delay)),
            asyncio.create_task(self._loop("retention", self.retention_pass, self._retention_delay)),
            asyncio.create_task(self._loop("gauges", self.refresh_gauges, self._gauges_delay)),
            asyncio.create_task(self._loop("checkpoint", self.checkpoint, self._checkpoint_delay)),
            asyncio.create_task(self._loop("search_index", self._index_pass, self._index_delay)),
        ]

    def kick(self) -> None:
        """Something was scheduled: re-plan the scheduler now."""
        self._kick.set()

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks = []

    async def _loop(self, name: str, work: Any, delay: Any) -> None:
        while True:
            self._kick.clear() if name == "scheduler" else None
            try:
                await work()
                wait = await delay()
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.LOOP_FAILURES.labels(name).inc()
                log.exception("loop_failed", loop=name)
                wait = 1.0
            if name == "scheduler":
                try:
                    await asyncio.wait_for(self._kick.wait(), max(wait, 0.0))
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(wait)

    # --- reminders, question deadlines, in-flight timeouts --------------------------
    async def _scheduler_pass(self) -> None:
        await self.scheduler_pass(time.time())

    async def scheduler_pass(self, now: float) -> int:
        """Fire what is due at `now`, batch by batch; returns reminders fired + questions expired."""
        total = 0
        while True:
            eff = Effects()

            def job(conn: Any, eff: Effects = eff) -> int:
                return reminders.fire_due(conn, eff, now) + questions.expire_due(conn, eff, now)

            n = await self.svc.db.write(job)
            await self.svc.announce(eff)
            total += n
            if n == 0:
                break
            await asyncio.sleep(0)  # let requests in between batches
        timeout = self.svc.config.inflight_timeout_s
        if now - self._last_stale_check >= min(timeout / 4, 30.0):
            self._last_stale_check = now
            await self.redeliver_stale(now)
        return total

    async def redeliver_stale(self, now: float) -> int:
        total = 0
        while True:
            eff = Effects()
            cutoff = now - self.svc.config.inflight_timeout_s

            def job(conn: Any, eff: Effects = eff, cutoff: float = cutoff) -> int:
                return messages.redeliver_stale(conn, eff, cutoff)

            n = await self.svc.db.write(job)
            await self.svc.announce(eff)
            total += n
            if n < 500:
                return total

    async def _scheduler_delay(self) -> float:
        def nxt(conn: Any) -> float | None:
            due = [t for t in (reminders.next_due(conn), questions.next_deadline(conn)) if t is not None]
            return min(due) if due else None

        at = await self.svc.db.read(nxt)
        cap = min(self.svc.config.tick_s, self.svc.config.inflight_timeout_s / 4)
        return cap if at is None else min(max(at - time.time(), 0.0), cap)

    async def _in_batches(self, step: Callable[[sqlite3.Connection], int], batch: int) -> int:
        """`step` (at most `batch` rows, returns how many) as one write job after another until
        one comes up short, yielding between them so requests get in; the async twin of
        hivewire.db.in_batches. Returns the total."""
        total = 0
        while True:
            n = await self.svc.db.write(step)
            total += n
            if n < batch:
                return total
            await asyncio.sleep(0)

    # --- retention -----------------------------------------------------------------
    async def retention_pass(self, now: float | None = None) -> int:
        cutoff = (now or time.time()) - self.svc.config.retention_days * 86400
        total = await self._in_batches(lambda c: retention.delete_batch(c, cutoff), retention.BATCH)
        if total:
            metrics.RETENTION_DELETED.inc(total)
            log.info("retention_swept", deleted=total, cutoff=cutoff)
        # every pass, the first at start: also drops what `hive vacuum` deleted meanwhile
        pruned = await self.svc.search.prune()
        if pruned:
            log.info("search_index_pruned", rows=pruned)
        return total

    async def _retention_delay(self) -> float:
        return self.svc.config.retention_interval_s

    # --- full-text index, off the send path --------------------------------------------
    async def index_messages(self, keep: int = 0) -> int:
        """Index the stored messages not yet searchable, batch by batch, all but (at most)
        the newest `keep`: a search calls this with 0, so it misses none."""
        total = 0
        while True:
            excess = await self.svc.search.lag() - keep
            if excess <= 0:
                break
            n = await self.svc.search.index(min(excess, search_index.BATCH))
            total += n
            if n == 0:
                break
        if total:
            metrics.INDEXED.inc(total)
        return total

    async def _index_pass(self) -> None:
        """The background indexing, on the index's own thread. While sends arrive faster
        than `index_busy_rate` per second it leaves the newest `index_max_lag` messages for
        later: indexing costs ~1.4 us of CPU per body, which on a 2-core box the send path
        (the loop, nats-server, the callers) wants during a flood."""
        now, sends = time.monotonic(), self.svc.sends_counted
        rate = (sends - self._index_sends) / max(now - self._index_at, 1e-3)
        self._index_at, self._index_sends = now, sends
        await self.index_messages(self.svc.config.index_max_lag if rate > self.svc.config.index_busy_rate else 0)

    async def _index_delay(self) -> float:
        return self.svc.config.index_s

    # --- WAL checkpoints, off the commit path ----------------------------------------
    async def checkpoint(self) -> None:
        """Copies WAL pages into the db file off the commit path; the writer's own checkpoint
        only finishes what is left (see store.WAL_CHECKPOINT_PAGES)."""
        await self.svc.db.read(lambda c: c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall())

    async def _checkpoint_delay(self) -> float:
        return 1.0

    # --- gauges --------------------------------------------------------------------
    async def refresh_gauges(self) -> None:
        def read(conn: Any) -> tuple[dict[str, int], int, int, int]:
            return (
                messages.inbox_depths(conn),
                approvals.count_pending(conn),
                questions.count_open(conn),
                reminders.count_pending(conn),
            )

        depths, pending, open_q, rem = await self.svc.db.read(read)
        lag = await self.svc.search.lag()
        for agent in self._seen_agents - depths.keys():
            metrics.INBOX_DEPTH.labels(agent).set(0)
        for agent, n in depths.items():
            metrics.INBOX_DEPTH.labels(agent).set(n)
        self._seen_agents |= depths.keys()
        metrics.PENDING_APPROVALS.set(pending)
        metrics.OPEN_QUESTIONS.set(open_q)
        metrics.PENDING_REMINDERS.set(rem)
        metrics.SEARCH_LAG.set(lag)

    async def _gauges_delay(self) -> float:
        return self.svc.config.gauges_s
