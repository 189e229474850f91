"""Which agents may have pending messages, so a recv for an agent with none skips its scan.

Why: unacked messages are indexed by id, not by recipient (an append-only index
keeps sends cheap; store.py, migration 5), so finding an agent's pending messages
scans the unacked ones oldest first, and for an agent with none, all of them:
3-4 ms per 100,000, on the event loop that also runs the broker's writer. Agents
poll again and again after draining their inbox, which is exactly that case.

The set may name an agent with nothing pending (that costs one scan), never miss
one that has some:
- an agent is added once a committed transaction made a message pending for it
  (`Effects.pollers`, applied by the service's announce before waiters wake);
- it is removed only after a committed recv came back with fewer messages than it
  asked for, and only if nothing was added for it since the recv's generation was
  read, before its query: whatever was pending then was either seen by the query
  or added after the read, which bumps the generation;
- at start it holds every agent with a pending message in the file.
Only the event loop touches it (the broker's writer runs there too).
"""

from __future__ import annotations

from collections.abc import Iterable


class PendingHints:
    def __init__(self) -> None:
        self._maybe: set[str] = set()
        self._generation: dict[str, int] = {}

    def load(self, agents: Iterable[str]) -> None:
        self._maybe = set(agents)

    def may_have(self, agent: str) -> bool:
        return agent in self._maybe

    def generation(self, agent: str) -> int:
        return self._generation.get(agent, 0)

    def added(self, agent: str) -> None:
        """A committed transaction made a message pending for `agent`."""
        self._generation[agent] = self._generation.get(agent, 0) + 1
        self._maybe.add(agent)

    def drained(self, agent: str, generation: int) -> None:
        """A committed recv, whose generation was read before its query, found every
        pending message of `agent` (fewer than it asked for)."""
        if self._generation.get(agent, 0) == generation:
            self._maybe.discard(agent)
