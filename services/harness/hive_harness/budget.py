"""Before each turn: is the agent over its budget, or a runaway? (docs/costs.md)

`Guard.blocked()` runs in the turn loop before a message is taken; while it
says True no recv happens, so the agent's messages stay pending in the broker
(never taken, never acked) until it resumes.

- Budgets: the ledger owner (`hive.broker.<me>.spend`) says which budgets apply
  (the agent's own, the swarm's unless this is manager and the swarm budget
  leaves manager out) and the spend it has ingested this period (UTC). The
  agent's own spend is also summed from its turn-stats.sqlite, so the turn
  that just ended counts before the ledger has ingested it. At or over ⇒
  status `over_budget`, presence `waiting/over_budget`. The answer is cached
  for CHECK_S; a wake (the ledger wakes every agent a budget change touches)
  drops the cache, so raising or clearing a budget resumes within a second or
  two; the next period resumes at its start.
- Runaway breaker: `HIVE_RUNAWAY_TURNS_PER_HOUR` (120) turns in the last hour,
  or `HIVE_RUNAWAY_FAILED_TURNS` (5) failed turns in a row ⇒ status
  `runaway`, presence `waiting/runaway`, sentinel `<state>/runaway` (a restart
  stays parked) until the operator's `ctl.resume`. 0 disables either limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

import structlog

from hive_harness import metrics
from hive_harness.bus import Bus
from hive_harness.ledgerpub import LedgerPublisher
from hivewire import config
from hivewire.service import HiveClient
from hivewire.wire import broker as wb
from hivewire.wire import ops
from hivewire.wire.agent import TurnStats
from hivewire.wire.common import Empty

log = structlog.get_logger("hive_harness.budget")

CHECK_S = 5.0  # re-ask the ledger at most this often unless a wake dropped the cache
PARK_POLL_S = 5.0  # a parked agent looks again at least this often
RUNAWAY_SENTINEL = "runaway"
PARKED = ("over_budget", "runaway")


def over(budget: wb.Budget, usd: float, tokens: int) -> bool:
    return (budget.usd is not None and usd >= budget.usd) or (budget.tokens is not None and tokens >= budget.tokens)


class Guard:
    def __init__(self, bus: Bus, client: HiveClient, stats_db: Any, wake: asyncio.Event) -> None:
        self.bus, self.client, self.stats_db, self.wake = bus, client, stats_db, wake
        self.agent = bus.agent
        self.turns_per_hour = config.RUNAWAY_TURNS_PER_HOUR.get()
        self.failed_limit = config.RUNAWAY_FAILED_TURNS.get()
        self.recent: deque[float] = deque()
        self.failed_streak = 0
        self.sentinel = bus.state_dir / RUNAWAY_SENTINEL
        self.runaway: str | None = self._load_sentinel()
        self.reply: wb.SpendReply | None = None
        self.checked_at = 0.0
        self.over_budget: wb.BudgetStatus | None = None
        self.publisher: LedgerPublisher | None = None  # kicked after each turn row
        self.last_cost_usd: float | None = None

    def _load_sentinel(self) -> str | None:
        try:
            return self.sentinel.read_text().strip() or "runaway"
        except OSError:
            return None

    def invalidate(self) -> None:
        self.checked_at = 0.0

    # --- the gate -------------------------------------------------------------------
    async def blocked(self) -> bool:
        if self.runaway is not None:
            await self._park("runaway", self.runaway)
            await self._sleep(PARK_POLL_S)
            return True
        st = await self.check()
        if st is not None:
            fraction = f"{st.fraction:.0%}"
            scope = "swarm" if st.budget.agent is None else "agent"
            await self._park("over_budget", f"{scope} budget per {st.budget.per} at {fraction}")
            await self._sleep(max(0.05, min(PARK_POLL_S, st.period_end - time.time())))
            return True
        if self.bus.status in PARKED:
            metrics.PARKED.labels(self.bus.status).set(0)
            await self.bus.set_status("online")
            await self.bus.emit("note", text="resumed: under budget and not a runaway")
        return False

    async def _park(self, status: str, why: str) -> None:
        if self.bus.status == status:
            return
        metrics.PARKED.labels(status).set(1)
        await self.bus.set_status(status, status)
        await self.bus.emit("note", text=f"parked ({status}): {why}; messages wait unread")
        log.warning("parked", reason=status, why=why)

    async def _sleep(self, s: float) -> None:
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), s)

    async def check(self) -> wb.BudgetStatus | None:
        """The budget the agent is at or over now, else None."""
        now = time.time()
        if self.reply is None or time.monotonic() - self.checked_at > CHECK_S or any(
                now >= b.period_end for b in self.reply.budgets):
            try:
                self.reply = await self.client.request(ops.BROKER_SPEND, Empty(), agent=self.agent, timeout=3.0)
                self.checked_at = time.monotonic()
            except Exception as exc:  # the ledger away: go by the last answer (none: no budget known)
                self.checked_at = time.monotonic()  # and ask again in CHECK_S, not on every step
                metrics.FAILURES.labels("budget_check").inc()
                log.warning("budget_check_failed", error=str(exc))
        self.over_budget = None
        for st in self.reply.budgets if self.reply else []:
            if now >= st.period_end:
                continue  # a new period: last period's spend no longer counts
            usd, tokens = await self.local_spend(st.period_start)
            if st.budget.agent is not None:  # the ledger may not have this agent's last turn yet
                usd, tokens = max(st.spent_usd, usd), max(st.spent_tokens, tokens)
            else:
                usd = st.spent_usd + max(0.0, usd - st.agent_spent_usd)
                tokens = st.spent_tokens + max(0, tokens - st.agent_spent_tokens)
            if over(st.budget, usd, tokens):
                self.over_budget = st
                return st
        return None

    async def local_spend(self, since: float) -> tuple[float, int]:
        if self.stats_db is None:
            return 0.0, 0

        def q(conn: Any) -> tuple[float, int]:
            r = conn.execute(
                "SELECT COALESCE(SUM(cost_usd), 0), COALESCE(SUM(input_tokens + output_tokens + "
                "cache_read_input_tokens + cache_creation_input_tokens), 0) FROM turn_stats "
                "WHERE started_at >= ? AND ended_at >= ?", (since - 86400, since)).fetchone()
            return float(r[0]), int(r[1])

        try:
            return await self.stats_db.read(q)  # type: ignore[no-any-return]
        except Exception as exc:
            metrics.FAILURES.labels("budget_local").inc()
            log.error("budget_local_spend_failed", error=str(exc))
            return 0.0, 0

    # --- after each turn ------------------------------------------------------------------
    def turn_done(self, row: TurnStats) -> None:
        self.last_cost_usd = row.cost_usd
        if self.publisher is not None:
            self.publisher.kick()
        costs = row.model_costs or ({row.model: row.cost_usd} if row.cost_usd > 0 else {})
        for model, usd in costs.items():
            metrics.COST_USD.labels(model).inc(usd)
        self.recent.append(row.ended_at)
        while self.recent and self.recent[0] < row.ended_at - 3600:
            self.recent.popleft()
        self.failed_streak = self.failed_streak + 1 if row.result_kind == "failed" else 0
        if self.runaway is not None:
            return
        if self.turns_per_hour and len(self.recent) >= self.turns_per_hour:
            self.trip(f"{len(self.recent)} turns in the last hour (HIVE_RUNAWAY_TURNS_PER_HOUR="
                      f"{self.turns_per_hour})")
        elif self.failed_limit and self.failed_streak >= self.failed_limit:
            self.trip(f"{self.failed_streak} failed turns in a row (HIVE_RUNAWAY_FAILED_TURNS={self.failed_limit})")

    def trip(self, why: str) -> None:
        self.runaway = why
        metrics.RUNAWAYS.inc()
        log.error("runaway", agent=self.agent, why=why)
        try:
            self.sentinel.write_text(why + "\n")
        except OSError as exc:
            metrics.FAILURES.labels("sentinel").inc()
            log.error("runaway_sentinel_failed", error=str(exc))

    async def resume(self) -> bool:
        """The operator's `ctl.resume`: lift a runaway park (True if there was one)."""
        was = self.runaway is not None
        self.runaway = None
        self.sentinel.unlink(missing_ok=True)
        self.recent.clear()
        self.failed_streak = 0
        self.invalidate()
        metrics.PARKED.labels("runaway").set(0)
        await self.bus.emit("note", text="resumed by the operator" if was else "resume: the agent was not a runaway")
        self.wake.set()
        return was
