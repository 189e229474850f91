"""The known agents: which agents exist as far as the broker is concerned, and their
harness instance. Read-only queries and the in-memory `Roster`; a leaf (imports no
other broker module), so messages, questions and the registry's workflows all build on it.

`manager` and `operator` are always known; the rest come from `known_agents`
(written by `registry`: a deployer upsert/remove, or a first presence).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from hivewire.names import MANAGER, OPERATOR

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


def current_instance(conn: sqlite3.Connection, agent: str) -> str | None:
    row = conn.execute("SELECT instance FROM agent_presence WHERE agent = ?", (agent,)).fetchone()
    return None if row is None else str(row["instance"])
