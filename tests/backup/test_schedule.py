"""The scheduler with a fake clock: cron per class, local time, catch-up."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from hive_backup.config import parse_config
from hive_backup.schedule import FakeClock, Scheduler

SCHEDULE = parse_config("").schedule  # the defaults: 06:00 and 18:00, bulky on Sunday 03:00


async def run_until(clock: FakeClock, sched: Scheduler, until: datetime, step: float = 60.0) -> None:
    while clock.now() < until.timestamp():
        await clock.advance(step)


async def test_fires_at_six_and_eighteen_local() -> None:
    clock = FakeClock(datetime(2025, 3, 3, 5, 58).timestamp())  # a Monday
    runs: list[tuple[datetime, list[str]]] = []

    async def run(classes: list[str]) -> None:
        runs.append((datetime.fromtimestamp(clock.now()), classes))

    sched = Scheduler(SCHEDULE, run, clock, catch_up=False)
    task = asyncio.create_task(sched.run_forever())
    try:
        await run_until(clock, sched, datetime(2025, 3, 3, 5, 59, 30), step=30)
        assert runs == []
        await run_until(clock, sched, datetime(2025, 3, 4, 7, 0))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    hours = [(t.day, t.hour, t.minute) for t, _ in runs]
    assert hours == [(3, 6, 0), (3, 18, 0), (4, 6, 0)]
    assert all(classes == ["databases", "repos", "secrets"] for _, classes in runs)


async def test_bulky_weekly_and_catch_up() -> None:
    clock = FakeClock(datetime(2025, 3, 8, 12, 0).timestamp())  # Saturday noon
    runs: list[tuple[datetime, list[str]]] = []

    async def run(classes: list[str]) -> None:
        runs.append((datetime.fromtimestamp(clock.now()), classes))

    # databases last succeeded yesterday evening (missed 06:00 today); bulky is up to date
    last = {c: datetime(2025, 3, 7, 18, 0).timestamp() for c in ("databases", "secrets", "repos")}
    last["bulky"] = datetime(2025, 3, 2, 3, 0).timestamp()
    sched = Scheduler(SCHEDULE, run, clock, last_success=last, catch_up=True)
    task = asyncio.create_task(sched.run_forever())
    try:
        await clock.advance(1)
        assert [c for _, c in runs] == [["databases", "repos", "secrets"]]  # caught up at start
        await run_until(clock, sched, datetime(2025, 3, 9, 4, 0))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [(t.day, t.hour, c) for t, c in runs[1:]] == [
        (8, 18, ["databases", "repos", "secrets"]),
        (9, 3, ["bulky"]),
    ]


async def test_a_failed_run_does_not_stop_the_schedule() -> None:
    clock = FakeClock(datetime(2025, 3, 3, 5, 0).timestamp())
    calls = 0

    async def run(classes: list[str]) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("disk full")

    sched = Scheduler({"databases": "0 * * * *"}, run, clock, catch_up=False)
    task = asyncio.create_task(sched.run_forever())
    try:
        await run_until(clock, sched, datetime(2025, 3, 3, 8, 30))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert calls == 3


def test_bad_cron_is_rejected() -> None:
    with pytest.raises(ValueError, match="invalid cron"):
        parse_config('[schedule]\ndatabases = "every day"\n')
    with pytest.raises(ValueError, match="unknown backup class"):
        parse_config('[schedule]\nlogs = "0 1 * * *"\n')
