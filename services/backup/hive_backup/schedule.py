"""Cron schedules per class, driven by an injectable clock (a fake one in tests).

Classes that fall due at the same moment run as one snapshot. With
`catch_up`, a class whose last success is older than its previous scheduled
time (the host was down at 06:00) runs at start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

import structlog
from croniter import croniter

log = structlog.get_logger("hive_backup.schedule")

MAX_SLEEP_S = 60.0  # re-check often: wall clocks jump (suspend, DST, NTP)


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """Time moves only when a test calls `advance`."""

    def __init__(self, start: float) -> None:
        self.t = start
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self.t + seconds, fut))
        await fut

    async def advance(self, seconds: float) -> None:
        self.t += seconds
        for deadline, fut in list(self._waiters):
            if deadline <= self.t:
                self._waiters.remove((deadline, fut))
                if not fut.done():
                    fut.set_result(None)
        for _ in range(20):  # let woken tasks run
            await asyncio.sleep(0)


def next_fire(expr: str, after: float) -> float:
    return float(croniter(expr, datetime.fromtimestamp(after).astimezone()).get_next(float))


def prev_fire(expr: str, before: float) -> float:
    return float(croniter(expr, datetime.fromtimestamp(before).astimezone()).get_prev(float))


class Scheduler:
    def __init__(
        self,
        schedule: dict[str, str],
        run: Callable[[list[str]], Awaitable[object]],
        clock: Clock,
        *,
        last_success: dict[str, float] | None = None,
        catch_up: bool = True,
    ) -> None:
        self.schedule = {c: e for c, e in schedule.items() if e}
        self.run = run
        self.clock = clock
        now = clock.now()
        self.next: dict[str, float] = {}
        for cls, expr in self.schedule.items():
            last = (last_success or {}).get(cls, 0.0)
            self.next[cls] = now if catch_up and last < prev_fire(expr, now) else next_fire(expr, now)

    def due(self, now: float) -> list[str]:
        """Classes due at `now`; their next time moves past `now`."""
        out = sorted(c for c, t in self.next.items() if t <= now)
        for c in out:
            self.next[c] = next_fire(self.schedule[c], now)
        return out

    async def run_forever(self) -> None:
        if not self.next:
            return
        while True:
            wait = min(self.next.values()) - self.clock.now()
            if wait > 0:
                await self.clock.sleep(min(wait, MAX_SLEEP_S))
                continue
            classes = self.due(self.clock.now())
            log.info("backup_scheduled_run", classes=classes)
            try:
                await self.run(classes)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the schedule must survive a failed run
                log.error("backup_scheduled_run_failed", classes=classes, error=str(exc))
