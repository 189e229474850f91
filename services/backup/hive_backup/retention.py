"""Grandfather-father-son retention, per set of classes.

Snapshots are grouped by their classes (the twice-daily set and the weekly
bulky set age separately). In each group the newest snapshot of each of the
last `daily` days, `weekly` ISO weeks and `monthly` months is kept. A snapshot
that failed verify never fills a slot. The newest good snapshot of each group
is always kept, whatever the numbers say.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hive_backup.config import Retention


@dataclass(frozen=True)
class Entry:
    snapshot_id: str
    created_at: float
    classes: tuple[str, ...]
    verified: bool | None  # None: not checked yet


def _buckets(entries: list[Entry], n: int, key: object) -> set[str]:
    keep: set[str] = set()
    seen: list[object] = []
    for e in entries:  # newest first
        k = key(e)  # type: ignore[operator]
        if k in seen:
            continue
        if len(seen) >= n:
            break
        seen.append(k)
        keep.add(e.snapshot_id)
    return keep


def select(entries: list[Entry], policy: Retention) -> set[str]:
    """The snapshot ids to keep."""
    groups: dict[tuple[str, ...], list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.classes, []).append(e)
    keep: set[str] = set()
    for group in groups.values():
        group.sort(key=lambda e: e.created_at, reverse=True)
        usable = [e for e in group if e.verified is not False]

        def day(e: Entry) -> object:
            return time.localtime(e.created_at)[:3]

        def week(e: Entry) -> object:
            return time.strftime("%G-%V", time.localtime(e.created_at))

        def month(e: Entry) -> object:
            return time.localtime(e.created_at)[:2]

        keep |= {e.snapshot_id for e in usable[: policy.last]}
        keep |= _buckets(usable, policy.daily, day)
        keep |= _buckets(usable, policy.weekly, week)
        keep |= _buckets(usable, policy.monthly, month)
        good = [e for e in group if e.verified is True] or usable
        if good:
            keep.add(good[0].snapshot_id)
    return keep
