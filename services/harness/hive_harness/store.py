"""The harness's two sqlite files in the agent's state dir.

- `events.sqlite`: every LiveEvent (`events(id, ts, kind, payload_json)`),
  paged backwards by id for `ctl.history`. If it cannot be opened the harness
  keeps running broadcast-only. Retention is the deployer's job.
- `turn-stats.sqlite`: one TurnStats row per turn; tolerant migrations
  (`ensure_columns`) so files from before a column existed catch up; v2 adds
  `cost_usd`/`model_costs_json`/`turn_id` and `ledger_outbox` (hive_harness.ledgerpub).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import structlog

from hive_harness.ledgerpub import LEDGER_OUTBOX_SQL, queue_for_ledger
from hivewire import config
from hivewire.db import Database
from hivewire.migrations import DatabaseSpec, Migration, Migrations, ensure_columns
from hivewire.wire.agent import LiveEvent, TurnStats

log = structlog.get_logger("hive_harness.store")

EVENTS_SQL = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    payload_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
"""

TURN_COLUMNS: dict[str, str] = {
    "agent": "TEXT NOT NULL DEFAULT ''",
    "model": "TEXT NOT NULL DEFAULT ''",
    "wake_from": "TEXT NOT NULL DEFAULT ''",
    "result_kind": "TEXT NOT NULL DEFAULT 'ok'",
    "started_at": "REAL NOT NULL DEFAULT 0",
    "ended_at": "REAL NOT NULL DEFAULT 0",
    "duration_ms": "INTEGER NOT NULL DEFAULT 0",
    "input_tokens": "INTEGER NOT NULL DEFAULT 0",
    "output_tokens": "INTEGER NOT NULL DEFAULT 0",
    "cache_read_input_tokens": "INTEGER NOT NULL DEFAULT 0",
    "cache_creation_input_tokens": "INTEGER NOT NULL DEFAULT 0",
    "last_input_tokens": "INTEGER NOT NULL DEFAULT 0",
    "last_output_tokens": "INTEGER NOT NULL DEFAULT 0",
    "last_cache_read_input_tokens": "INTEGER NOT NULL DEFAULT 0",
    "last_cache_creation_input_tokens": "INTEGER NOT NULL DEFAULT 0",
    "context_window": "INTEGER NOT NULL DEFAULT 0",
    "tool_call_count": "INTEGER NOT NULL DEFAULT 0",
    "tool_calls_json": "TEXT NOT NULL DEFAULT '{}'",
    "open_threads_count": "INTEGER NOT NULL DEFAULT 0",
    "open_reminders_count": "INTEGER NOT NULL DEFAULT 0",
    "note": "TEXT",
    "cost_usd": "REAL NOT NULL DEFAULT 0",
    "model_costs_json": "TEXT NOT NULL DEFAULT '{}'",
    "turn_id": "TEXT NOT NULL DEFAULT ''",
}


def _turns_v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS turn_stats (id INTEGER PRIMARY KEY AUTOINCREMENT)")
    ensure_columns(conn, "turn_stats", TURN_COLUMNS)  # tolerant: old files keep their rows
    conn.execute("CREATE INDEX IF NOT EXISTS turn_stats_started ON turn_stats(started_at)")


EVENTS_MIGRATIONS = Migrations("harness-events", [Migration(1, "events", EVENTS_SQL, "DROP TABLE events")])


def _turns_v2(conn: sqlite3.Connection) -> None:
    ensure_columns(conn, "turn_stats", TURN_COLUMNS)  # cost_usd, model_costs_json, turn_id
    conn.execute(LEDGER_OUTBOX_SQL)


TURNS_MIGRATIONS = Migrations("harness-turn-stats", [
    Migration(1, "turn_stats", _turns_v1, "DROP TABLE turn_stats"),
    Migration(2, "cost_and_ledger_outbox", _turns_v2, "DROP TABLE ledger_outbox"),
])


def state_dir(home: Path, agent: str) -> Path:
    return home / "agents" / agent / "state"


def events_path(sdir: Path) -> Path:
    return Path(config.EVENTS_DB.get() or sdir / "events.sqlite")


def turns_path(sdir: Path) -> Path:
    return sdir / "turn-stats.sqlite"


def databases(settings: Any) -> list[DatabaseSpec]:
    """Every agent's harness dbs under HIVE_HOME (for `hive migrate`)."""
    specs: list[DatabaseSpec] = []
    agents = Path(settings.home) / "agents"
    for adir in sorted(agents.iterdir()) if agents.is_dir() else []:
        sdir = adir / "state"
        if sdir.is_dir():
            specs.append(DatabaseSpec(f"harness-events:{adir.name}", sdir / "events.sqlite", EVENTS_MIGRATIONS))
            specs.append(DatabaseSpec(f"harness-turn-stats:{adir.name}", sdir / "turn-stats.sqlite",
                                      TURNS_MIGRATIONS))
    return specs


class EventStore:
    """events.sqlite, or nothing (broadcast-only) when it cannot open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db: Database | None = None

    async def open(self) -> bool:
        try:
            self.db = await Database(self.path, EVENTS_MIGRATIONS, synchronous="NORMAL", label="events").open()
            return True
        except Exception as exc:  # any failure: keep running broadcast-only
            log.error("events_db_unavailable", path=str(self.path), error=str(exc))
            self.db = None
            return False

    async def close(self) -> None:
        if self.db is not None:
            await self.db.close()
            self.db = None

    async def append(self, ts: float, kind: str, payload: dict[str, Any]) -> int | None:
        if self.db is None:
            return None
        data = json.dumps(payload, ensure_ascii=False, default=str)

        def ins(conn: sqlite3.Connection) -> int:
            cur = conn.execute("INSERT INTO events(ts, kind, payload_json) VALUES (?, ?, ?)", (ts, kind, data))
            return int(cur.lastrowid or 0)

        return await self.db.write(ins)

    async def append_many(self, events: list[LiveEvent]) -> int:
        """Insert `events` (ids already assigned, ascending) in one transaction.

        Returns the shift applied to their ids: 0 normally; if the file already holds
        an id >= the first one (another writer got there, e.g. an overlapping
        instance), the batch is stored from MAX(id)+1 instead and the shift says by
        how much, so the caller renumbers what it publishes. Raises if there is no file."""
        if self.db is None or not events:
            raise RuntimeError("events.sqlite is not open")
        rows = [(e.id, e.ts, e.kind, json.dumps(e.payload, ensure_ascii=False, default=str)) for e in events]

        def ins(conn: sqlite3.Connection) -> int:
            top = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])
            shift = top + 1 - rows[0][0] if top >= rows[0][0] else 0
            it = rows if not shift else [(r[0] + shift, *r[1:]) for r in rows]
            conn.executemany("INSERT INTO events(id, ts, kind, payload_json) VALUES (?, ?, ?, ?)", it)
            return shift

        return await self.db.write(ins, weight=len(rows))

    async def history(self, limit: int, before_id: int | None) -> list[LiveEvent]:
        if self.db is None:
            return []
        limit = max(1, min(limit, 2000))

        def q(conn: sqlite3.Connection) -> list[LiveEvent]:
            if before_id is None:
                rows = conn.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
            else:
                rows = conn.execute("SELECT * FROM events WHERE id < ? ORDER BY id DESC LIMIT ?",
                                    (before_id, limit)).fetchall()
            return [LiveEvent(id=r["id"], ts=r["ts"], kind=r["kind"], payload=json.loads(r["payload_json"]))
                    for r in rows]

        return await self.db.read(q)

    async def max_id(self) -> int:
        if self.db is None:
            return 0
        return await self.db.read(lambda c: int(c.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]))


class TurnStatsStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db: Database | None = None

    async def open(self) -> None:
        try:
            self.db = await Database(self.path, TURNS_MIGRATIONS, label="turn-stats").open()
        except Exception as exc:  # best effort, like the seed
            log.error("turn_stats_db_unavailable", path=str(self.path), error=str(exc))
            self.db = None

    async def close(self) -> None:
        if self.db is not None:
            await self.db.close()
            self.db = None

    async def record(self, row: TurnStats) -> None:
        if self.db is None:
            return
        d = msgspec.to_builtins(row)
        d["model_costs_json"] = json.dumps(d.pop("model_costs", {}), sort_keys=True)
        cols = [c for c in TURN_COLUMNS if c in d]
        sql = f"INSERT INTO turn_stats({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        payload = msgspec.json.encode(row) if row.turn_id else None

        def ins(conn: sqlite3.Connection) -> None:
            conn.execute(sql, [d[c] for c in cols])
            if payload is not None:  # the ledger's copy, in the same transaction (ledgerpub)
                queue_for_ledger(conn, row.turn_id, payload)

        try:
            await self.db.write(ins)
        except Exception as exc:  # failures log and never block the harness
            log.error("turn_stats_insert_failed", error=str(exc))

    async def last(self, n: int = 1) -> list[TurnStats]:
        if self.db is None:
            return []

        def q(conn: sqlite3.Connection) -> list[TurnStats]:
            rows = conn.execute("SELECT * FROM turn_stats ORDER BY id DESC LIMIT ?", (n,)).fetchall()
            return [msgspec.convert({**{k: r[k] for k in TURN_COLUMNS if k != "model_costs_json"},
                                     "model_costs": json.loads(r["model_costs_json"] or "{}")}, TurnStats)
                    for r in rows]

        return await self.db.read(q)
