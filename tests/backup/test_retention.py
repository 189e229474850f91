"""Grandfather-father-son retention."""

from __future__ import annotations

from datetime import datetime, timedelta

from hive_backup.config import Retention
from hive_backup.retention import Entry, select

DB = ("databases", "repos", "secrets")


def at(day: datetime, hour: int) -> float:
    return day.replace(hour=hour).timestamp()


def twice_daily(days: int, start: datetime) -> list[Entry]:
    out = []
    for d in range(days):
        day = start + timedelta(days=d)
        for h in (6, 18):
            out.append(Entry(f"{day:%Y%m%d}-{h:02d}", at(day, h), DB, True))
    return out


def test_daily_weekly_monthly() -> None:
    start = datetime(2025, 1, 1)
    entries = twice_daily(120, start)  # Jan 1 .. Apr 30
    keep = select(entries, Retention(last=2, daily=14, weekly=4, monthly=3))
    newest = start + timedelta(days=119)
    expected = {f"{newest:%Y%m%d}-06"}  # last=2: both runs of the newest day
    expected |= {f"{newest - timedelta(days=d):%Y%m%d}-18" for d in range(14)}  # newest of each of 14 days
    # newest of each of the last 4 ISO weeks (Sundays' 18:00, the newest day of the current week)
    expected |= {"20250430-18", "20250427-18", "20250420-18", "20250413-18"}
    expected |= {"20250430-18", "20250331-18", "20250228-18"}  # newest of each of 3 months
    assert keep == expected


def test_never_deletes_the_last_good_snapshot() -> None:
    start = datetime(2025, 1, 1)
    good = Entry("old-good", at(start, 6), DB, True)
    bad = [Entry(f"bad-{i}", at(start + timedelta(days=i + 1), 6), DB, False) for i in range(5)]
    keep = select([good, *bad], Retention(last=0, daily=1, weekly=0, monthly=0))
    assert keep == {"old-good"}  # failed snapshots never fill a slot, the good one stays


def test_zero_retention_still_keeps_newest_good() -> None:
    start = datetime(2025, 1, 1)
    entries = twice_daily(3, start)
    assert select(entries, Retention(last=0, daily=0, weekly=0, monthly=0)) == {"20250103-18"}


def test_class_sets_age_separately() -> None:
    start = datetime(2025, 1, 6)
    entries = twice_daily(10, start)
    bulky = [Entry(f"bulky-{w}", at(start + timedelta(days=7 * w), 3), ("bulky",), None) for w in range(3)]
    keep = select(entries + bulky, Retention(last=1, daily=2, weekly=0, monthly=0))
    assert keep == {"20250115-18", "20250114-18", "bulky-2", "bulky-1"}
