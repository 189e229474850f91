"""The registry's workflows: an agent becomes known or forgotten, a presence arrives.

An agent is known when the deployer registered it (`hive.broker._registry.upsert`)
or once it ever announced a harness presence; `manager` and `operator` are always
known. A deployer `remove` forgets an agent (and fails its pending approvals),
and only a new deployer `upsert` brings it back (a stale presence heartbeat
does not resurrect it). These touch several tables (approvals, messages), so they
sit above them; the read-only queries are in `known` (a leaf).
"""

from __future__ import annotations

import sqlite3

from hive_broker import approvals, messages
from hive_broker.effects import Effects
from hive_broker.known import ALWAYS_KNOWN
from hivewire.names import OPERATOR, validate_agent_name
from hivewire.wire.agent import Presence


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
