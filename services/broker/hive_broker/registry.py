"""Which agents exist, as far as the broker is concerned, and their harness instance.

An agent is known when the deployer registered it (`hive.broker._registry.upsert`)
or once it ever announced a harness presence; `manager` and `operator` are always
known. A deployer `remove` forgets an agent (and fails its pending approvals),
and only a new deployer `upsert` brings it back (a stale presence heartbeat
does not resurrect it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from hive_broker import approvals, messages
from hive_broker.effects import Effects
from hivewire.names import MANAGER, OPERATOR, validate_agent_name
from hivewire.wire.agent import Presence

ALWAYS_KNOWN = (MANAGER, OPERATOR)


def is_known(conn: sqlite3.Connection, name: str) -> bool:
    return name in known_among(conn, {name})


def known_among(conn: sqlite3.Connection, names: set[str]) -> set[str]:
    """Which of `names` are known: one query for a batch of sends' recipients instead
    of `is_known` per send (a query each was a tenth of a send's CPU)."""
    known = names & set(ALWAYS_KNOWN)
    wanted = sorted(names - known)
    for start in range(0, len(wanted), 500):  # well under sqlite's bound on parameters
        chunk = wanted[start:start + 500]
        known.update(r[0] for r in conn.execute(
            f"SELECT name FROM known_agents WHERE removed_at IS NULL AND name IN ({','.join('?' * len(chunk))})",
            chunk))
    return known


class Roster:
    """The known agents, held in memory, so that a batch of sends checks its recipients
    without a query (that query was ~6% of a send's CPU in the flood benchmark).

    The service loads it when it opens broker.sqlite and applies each committed
    transaction's `known_agents` changes (from its Effects) before answering, so it
    never holds what a rollback undid. Sound because the broker is the file's only
    writer while it runs (an in-place restore needs Hive stopped).
    """

    __slots__ = ("_names",)

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._names = {*names, *ALWAYS_KNOWN}

    @classmethod
    def load(cls, conn: sqlite3.Connection) -> Roster:
        return cls(known_agents(conn))

    def known_among(self, names: set[str]) -> set[str]:
        return names & self._names

    def apply(self, name: str, op: str) -> None:
        """One committed `known_agents` change (op as in `hive.broker.changed`)."""
        if op == "delete":
            self._names.discard(name)
        else:
            self._names.add(name)


def known_agents(conn: sqlite3.Connection) -> list[str]:
    """Every known agent (the operator is not an agent, so not listed)."""
    rows = conn.execute("SELECT name FROM known_agents WHERE removed_at IS NULL").fetchall()
    return sorted({MANAGER, *(r[0] for r in rows)} - {OPERATOR})


def upsert(conn: sqlite3.Connection, eff: Effects, name: str, now: float) -> bool:
    """The deployer created (or revived) `name`; True when that changed anything."""
    validate_agent_name(name)
    row = conn.execute("SELECT source, removed_at FROM known_agents WHERE name = ?", (name,)).fetchone()
    if row is not None and row["source"] == "deployer" and row["removed_at"] is None:
        return False
    conn.execute(
        "INSERT INTO known_agents(name, source, added_at) VALUES (?, 'deployer', ?) "
        "ON CONFLICT(name) DO UPDATE SET source = 'deployer', removed_at = NULL",
        (name, now),
    )
    eff.change("known_agents", name, "insert" if row is None else "update")
    return True


def remove(conn: sqlite3.Connection, eff: Effects, name: str, now: float) -> bool:
    validate_agent_name(name, allow_reserved=True)
    if name in ALWAYS_KNOWN:
        from hivewire.errors import HiveError

        raise HiveError("forbidden", f"{name!r} is always known and cannot be removed")
    cur = conn.execute(
        "UPDATE known_agents SET removed_at = ? WHERE name = ? AND removed_at IS NULL", (now, name)
    )
    if cur.rowcount:
        eff.change("known_agents", name, "delete")
        # destroy fails any pending approvals, in the same transaction; a repeated
        # remove changes nothing, so a revive (spawn) requested after the destroy stays pending
        approvals.fail_pending_for(conn, eff, name, f"agent {name} was destroyed", now)
    return cur.rowcount > 0


def on_presence(conn: sqlite3.Connection, eff: Effects, agent: str, p: Presence, now: float) -> int:
    """Record a heartbeat; a new `instance` puts the agent's in-flight messages back.

    Returns how many messages were put back for redelivery.
    """
    validate_agent_name(agent, allow_reserved=True)
    if agent == OPERATOR:
        return 0
    if not p.instance or len(p.instance) > 200:
        from hivewire.errors import HiveError

        raise HiveError("bad_request", "presence without a valid instance")
    cur = conn.execute(
        "INSERT INTO known_agents(name, source, added_at) VALUES (?, 'presence', ?) ON CONFLICT(name) DO NOTHING",
        (agent, now),
    )
    if cur.rowcount:
        eff.change("known_agents", agent, "insert")
    row = conn.execute("SELECT instance FROM agent_presence WHERE agent = ?", (agent,)).fetchone()
    conn.execute(
        "INSERT INTO agent_presence(agent, instance, state, seen_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(agent) DO UPDATE SET instance = excluded.instance, state = excluded.state, "
        "seen_at = excluded.seen_at",
        (agent, p.instance, p.state, now),
    )
    if row is not None and row["instance"] == p.instance:
        return 0
    return messages.redeliver_for_new_instance(conn, eff, agent, p.instance)


def current_instance(conn: sqlite3.Connection, agent: str) -> str | None:
    row = conn.execute("SELECT instance FROM agent_presence WHERE agent = ?", (agent,)).fetchone()
    return None if row is None else str(row["instance"])
