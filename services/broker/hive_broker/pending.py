"""What the broker knows about each agent's pending messages without a scan.

Why: unacked messages are indexed by id, not by recipient (an append-only index
keeps sends cheap; store.py, migration 5), so finding an agent's pending messages
scans the unacked ones oldest first: for an agent with none, all of them, and for
an agent behind another's backlog, all of that backlog; 3-4 ms per 100,000, on
the event loop that also runs the broker's writer.

Two hints, each allowed to be too generous (that costs a scan), never too strict:

- **may have pending**: an agent joins once a committed transaction made a message
  pending for it (`Effects.pollers`, applied by the service's announce before
  waiters wake); it leaves only after a committed recv came back with fewer than
  it asked for, and only if nothing was added for it since the recv read the
  agent's generation, before its query.
- **floor**: no pending message of the agent has a smaller id. New messages get
  larger ids, so only a put-back (redelivery, `Effects.put_back`) lowers it, to 0,
  and bumps the agent's reset count. A committed recv raises it past the last
  message it handed out (those were the oldest pending at or above the floor),
  unless a put-back came since the recv read the reset count.

Whatever was pending when a recv read its counts was either seen by its query or
committed after the read, which bumps the count before anyone looks again. At
start every agent with a pending message in the file may have some, and every
floor is 0. Only the event loop touches this (the broker's writer runs there).
"""

from __future__ import annotations

from collections.abc import Iterable


class PendingHints:
    def __init__(self) -> None:
        self._maybe: set[str] = set()
        self._generation: dict[str, int] = {}
        self._floor: dict[str, int] = {}
        self._resets: dict[str, int] = {}

    def load(self, agents: Iterable[str]) -> None:
        self._maybe = set(agents)

    # --- read before a recv's query ---------------------------------------------------
    def may_have(self, agent: str) -> bool:
        return agent in self._maybe

    def generation(self, agent: str) -> int:
        return self._generation.get(agent, 0)

    def resets(self, agent: str) -> int:
        return self._resets.get(agent, 0)

    def floor(self, agent: str) -> int:
        return self._floor.get(agent, 0)

    # --- after a commit -------------------------------------------------------------
    def added(self, agent: str) -> None:
        """A committed transaction made a message pending for `agent`."""
        self._generation[agent] = self._generation.get(agent, 0) + 1
        self._maybe.add(agent)

    def put_back(self, agent: str) -> None:
        """A committed transaction made in-flight messages of `agent` pending again."""
        self._resets[agent] = self._resets.get(agent, 0) + 1
        self._floor.pop(agent, None)

    def delivered_upto(self, agent: str, last_id: int, resets: int) -> None:
        """A committed recv, which read `resets` before its query, handed out the oldest
        pending messages of `agent` from its floor up to `last_id`."""
        if self._resets.get(agent, 0) == resets:
            self._floor[agent] = max(self._floor.get(agent, 0), last_id + 1)

    def drained(self, agent: str, generation: int) -> None:
        """A committed recv, which read `generation` before its query, found every
        pending message of `agent` (fewer than it asked for)."""
        if self._generation.get(agent, 0) == generation:
            self._maybe.discard(agent)
