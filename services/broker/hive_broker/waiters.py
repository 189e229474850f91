"""In-process wake-ups for waiting `recv` long-polls.

A waiter registers *before* it looks at the database, so a message committed
between its look and its wait still sets its event: no lost wake-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from hive_broker import metrics


class Waiters:
    def __init__(self) -> None:
        self._by_agent: dict[str, set[asyncio.Event]] = {}

    @contextmanager
    def waiting(self, agent: str) -> Iterator[asyncio.Event]:
        ev = asyncio.Event()
        self._by_agent.setdefault(agent, set()).add(ev)
        metrics.WAITING_POLLS.inc()
        try:
            yield ev
        finally:
            metrics.WAITING_POLLS.dec()
            group = self._by_agent.get(agent)
            if group is not None:
                group.discard(ev)
                if not group:
                    del self._by_agent[agent]

    def notify(self, agent: str) -> None:
        for ev in self._by_agent.get(agent, ()):
            ev.set()

    def notify_all(self) -> None:
        for group in self._by_agent.values():
            for ev in group:
                ev.set()

    def count(self, agent: str) -> int:
        return len(self._by_agent.get(agent, ()))
