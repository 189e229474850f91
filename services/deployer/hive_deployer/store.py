"""deployer.sqlite: agents, deploys and sessions (the deployer's own file)."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from hive_deployer.layout import Layout
from hivewire.db import Database
from hivewire.migrations import DatabaseSpec, Migration, Migrations, ensure_columns

# v2 (issue 24): what a session cost (its CLI's `result` event), and its ledger row until the
# ledger's stream has it (NULL once published, or when the run printed no result)
SESSION_COST_COLUMNS = {
    "cost_usd": "REAL NOT NULL DEFAULT 0",
    "model_costs_json": "TEXT NOT NULL DEFAULT '{}'",
    "tokens": "INTEGER NOT NULL DEFAULT 0",
    "ledger_pending": "BLOB",
}


def _sessions_v2(conn: sqlite3.Connection) -> None:
    ensure_columns(conn, "sessions", SESSION_COST_COLUMNS)


def _sessions_v2_down(conn: sqlite3.Connection) -> None:
    for col in SESSION_COST_COLUMNS:
        conn.execute(f"ALTER TABLE sessions DROP COLUMN {col}")


def _sessions_v3(conn: sqlite3.Connection) -> None:
    ensure_columns(conn, "sessions", {"host": "TEXT NOT NULL DEFAULT ''"})  # '' = the core host


MIGRATIONS = Migrations(
    "deployer",
    [
        Migration(
            1,
            "agents_deploys_sessions",
            """
            CREATE TABLE agents (
                name TEXT PRIMARY KEY,
                state TEXT NOT NULL,
                desired TEXT NOT NULL DEFAULT 'running',
                runtime TEXT NOT NULL,
                created_at REAL NOT NULL,
                since REAL NOT NULL,
                destroyed_at REAL,
                restarts INTEGER NOT NULL DEFAULT 0,
                crashes INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                deployed_tag TEXT,
                deployed_sha TEXT
            );
            CREATE TABLE deploys (
                id TEXT NOT NULL,
                agent TEXT NOT NULL,
                kind TEXT NOT NULL,
                commit_ref TEXT,
                status TEXT NOT NULL,
                approval_id TEXT,
                requested_at REAL NOT NULL,
                ended_at REAL,
                note TEXT,
                PRIMARY KEY (agent, id)
            );
            CREATE TABLE sessions (
                session_id TEXT PRIMARY KEY,
                task TEXT NOT NULL,
                priority TEXT NOT NULL,
                status TEXT NOT NULL,
                created REAL NOT NULL,
                updated REAL NOT NULL,
                metadata_json TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata_json)),
                exit_code INTEGER
            );
            CREATE INDEX sessions_status ON sessions(status, updated);
            """,
            "DROP TABLE sessions; DROP TABLE deploys; DROP TABLE agents;",
        ),
        Migration(2, "session_cost", _sessions_v2, _sessions_v2_down),
        Migration(3, "session_host", _sessions_v3, "ALTER TABLE sessions DROP COLUMN host"),
    ],
)


def databases(settings: Any) -> list[DatabaseSpec]:
    """`hive.databases` entry point: for `hive migrate` and backups."""
    return [DatabaseSpec("deployer", Layout(settings.home).db_path, MIGRATIONS)]


@dataclass
class AgentRow:
    name: str
    state: str
    desired: str
    runtime: str
    created_at: float
    since: float
    destroyed_at: float | None = None
    restarts: int = 0
    crashes: int = 0
    last_error: str | None = None
    deployed_tag: str | None = None
    deployed_sha: str | None = None


_COLS = ("name", "state", "desired", "runtime", "created_at", "since", "destroyed_at", "restarts", "crashes",
         "last_error", "deployed_tag", "deployed_sha")


class Store:
    def __init__(self, layout: Layout) -> None:
        self.db = Database(layout.db_path, MIGRATIONS, label="deployer")

    async def open(self) -> Store:
        await self.db.open()
        return self

    async def close(self) -> None:
        await self.db.close()

    # --- agents -------------------------------------------------------------
    async def agents(self) -> list[AgentRow]:
        def q(c: sqlite3.Connection) -> list[AgentRow]:
            return [AgentRow(**dict(r)) for r in c.execute(f"SELECT {','.join(_COLS)} FROM agents ORDER BY name")]

        return await self.db.read(q)

    async def agent(self, name: str) -> AgentRow | None:
        def q(c: sqlite3.Connection) -> AgentRow | None:
            r = c.execute(f"SELECT {','.join(_COLS)} FROM agents WHERE name=?", (name,)).fetchone()
            return AgentRow(**dict(r)) if r else None

        return await self.db.read(q)

    async def save(self, row: AgentRow) -> None:
        vals = tuple(getattr(row, c) for c in _COLS)

        def w(c: sqlite3.Connection) -> None:
            c.execute(
                f"INSERT OR REPLACE INTO agents({','.join(_COLS)}) VALUES ({','.join('?' * len(_COLS))})", vals
            )

        await self.db.write(w)

    async def delete_agent(self, name: str) -> None:
        await self.db.write(lambda c: c.execute("DELETE FROM agents WHERE name=?", (name,)))

    # --- deploys ------------------------------------------------------------
    async def record_deploy(self, agent: str, did: str, kind: str, status: str, *, commit_ref: str | None = None,
                            approval_id: str | None = None, note: str | None = None) -> None:
        now = time.time()
        ended = now if status in ("deployed", "failed", "denied") else None

        def w(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO deploys(id, agent, kind, commit_ref, status, approval_id, requested_at, ended_at, note)"
                " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(agent, id) DO UPDATE SET status=excluded.status,"
                " ended_at=excluded.ended_at, note=COALESCE(excluded.note, note),"
                " commit_ref=COALESCE(excluded.commit_ref, commit_ref)",
                (did, agent, kind, commit_ref, status, approval_id, now, ended, note),
            )

        await self.db.write(w)

    async def deploy_status(self, agent: str, did: str) -> str | None:
        def q(c: sqlite3.Connection) -> str | None:
            r = c.execute("SELECT status FROM deploys WHERE agent=? AND id=?", (agent, did)).fetchone()
            return str(r[0]) if r else None

        return await self.db.read(q)

    # --- sessions -----------------------------------------------------------
    async def add_session(self, sid: str, task: str, priority: str, metadata: dict[str, Any],
                          host: str = "") -> float:
        now = time.time()
        blob = json.dumps(metadata)

        def w(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO sessions(session_id, task, priority, status, created, updated, metadata_json, host)"
                " VALUES (?,?,?,?,?,?,?,?)", (sid, task, priority, "created", now, now, blob, host),
            )

        await self.db.write(w)
        return now

    async def set_session_status(self, sid: str, status: str, *, expect: tuple[str, ...] = (),
                                 exit_code: int | None = None) -> bool:
        def w(c: sqlite3.Connection) -> bool:
            sql = "UPDATE sessions SET status=?, updated=?, exit_code=COALESCE(?, exit_code) WHERE session_id=?"
            args: list[Any] = [status, time.time(), exit_code, sid]
            if expect:
                sql += f" AND status IN ({','.join('?' * len(expect))})"
                args += list(expect)
            return c.execute(sql, args).rowcount == 1

        return await self.db.write(w)

    async def set_session_cost(self, sid: str, cost_usd: float, model_costs: dict[str, float], tokens: int,
                               ledger_row: bytes | None) -> None:
        def w(c: sqlite3.Connection) -> None:
            c.execute("UPDATE sessions SET cost_usd=?, model_costs_json=?, tokens=?, ledger_pending=?"
                      " WHERE session_id=?", (cost_usd, json.dumps(model_costs, sort_keys=True), tokens, ledger_row,
                                              sid))

        await self.db.write(w)

    async def ledger_pending(self) -> list[tuple[str, bytes]]:
        """Sessions whose ledger row is not yet on the ledger's stream, oldest first."""
        def q(c: sqlite3.Connection) -> list[tuple[str, bytes]]:
            return [(r[0], bytes(r[1])) for r in c.execute(
                "SELECT session_id, ledger_pending FROM sessions WHERE ledger_pending IS NOT NULL ORDER BY updated")]

        return await self.db.read(q)

    async def ledger_sent(self, sid: str) -> None:
        await self.db.write(lambda c: c.execute("UPDATE sessions SET ledger_pending=NULL WHERE session_id=?", (sid,)))

    async def sessions(self, sid: str | None = None) -> list[dict[str, Any]]:
        def q(c: sqlite3.Connection) -> list[dict[str, Any]]:
            sql = "SELECT * FROM sessions"
            rows = c.execute(sql + " WHERE session_id=?", (sid,)) if sid else c.execute(sql + " ORDER BY created")
            return [dict(r) for r in rows]

        return await self.db.read(q)

    async def delete_session(self, sid: str) -> None:
        await self.db.write(lambda c: c.execute("DELETE FROM sessions WHERE session_id=?", (sid,)))
