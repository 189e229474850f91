"""broker.sqlite: schema, migrations and the batching writer.

The first migration is the seed's original three-table layout (created only
if absent), so a file written before versioning existed passes through it
untouched; the second adds every newer column with `ensure_columns` (an old
file keeps its rows) plus the newer tables, indexes and the FTS5 index; the
third moves FTS indexing off the send path (see search_index); the fourth
narrows the inbox index to unacked messages (see V4_UP); the fifth leaves a
send only index pages that every send of a commit shares (see V5_UP); the
sixth moves the FTS index out to broker-search.sqlite (see search_index).

Every id that crosses the wire is the row's integer id as a string.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal, TypeVar

from hive_broker import metrics, search_index
from hivewire.db import Database
from hivewire.migrations import DatabaseSpec, Migration, Migrations, ensure_columns, statements
from hivewire.settings import Settings

T = TypeVar("T")

V1_SEED_TABLES = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at REAL NOT NULL,
    delivered_at REAL
);
CREATE TABLE IF NOT EXISTS approvals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent TEXT NOT NULL,
    kind TEXT NOT NULL,
    commit_ref TEXT,
    requested_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    resolved_at REAL,
    note TEXT
);
CREATE TABLE IF NOT EXISTS operator_questions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    asker TEXT NOT NULL,
    question TEXT NOT NULL,
    options_json TEXT NOT NULL DEFAULT '[]',
    multi INTEGER NOT NULL DEFAULT 0,
    asked_at REAL NOT NULL,
    deadline_at REAL,
    answered_at REAL,
    answer TEXT
);
"""

V1_DOWN = "DROP TABLE operator_questions; DROP TABLE approvals; DROP TABLE messages;"

NEW_TABLES = """
CREATE TABLE IF NOT EXISTS reminders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent TEXT NOT NULL,
    body TEXT NOT NULL,
    file_path TEXT,
    created_at REAL NOT NULL,
    due_at REAL NOT NULL,
    fired_at REAL,
    cancelled_at REAL
);
CREATE TABLE IF NOT EXISTS known_agents (
    name TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    added_at REAL NOT NULL,
    removed_at REAL
);
CREATE TABLE IF NOT EXISTS agent_presence (
    agent TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    state TEXT NOT NULL,
    seen_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_inbox ON messages(recipient, acked_at, delivered_at, id);
CREATE UNIQUE INDEX IF NOT EXISTS messages_client_id ON messages(sender, client_id, recipient)
    WHERE client_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_acked ON messages(acked_at) WHERE acked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_inflight ON messages(delivered_at)
    WHERE delivered_at IS NOT NULL AND acked_at IS NULL;
CREATE INDEX IF NOT EXISTS reminders_due ON reminders(due_at) WHERE fired_at IS NULL AND cancelled_at IS NULL;
CREATE INDEX IF NOT EXISTS reminders_agent ON reminders(agent);
CREATE INDEX IF NOT EXISTS questions_open ON operator_questions(deadline_at) WHERE answered_at IS NULL;
CREATE INDEX IF NOT EXISTS approvals_status ON approvals(status);
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(body, content='messages', content_rowid='id');
CREATE TRIGGER IF NOT EXISTS messages_fts_ai AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body);
END;
CREATE TRIGGER IF NOT EXISTS messages_fts_ad AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
END;
CREATE TRIGGER IF NOT EXISTS messages_fts_au AFTER UPDATE OF body ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
    INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body);
END;
"""


def _v2_up(conn: sqlite3.Connection) -> None:
    ensure_columns(
        conn,
        "messages",
        {
            "acked_at": "REAL",
            "in_reply_to": "TEXT",
            "client_id": "TEXT",
            "redelivery_count": "INTEGER NOT NULL DEFAULT 0",
            "kind": "TEXT NOT NULL DEFAULT 'message'",
            "delivered_instance": "TEXT",
        },
    )
    ensure_columns(conn, "approvals", {"requested_by": "TEXT"})
    ensure_columns(
        conn,
        "operator_questions",
        {"recipient": "TEXT NOT NULL DEFAULT 'operator'", "answered_by": "TEXT"},
    )
    for stmt in statements(NEW_TABLES):
        conn.execute(stmt)
    # Index rows an old file already had.
    conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")


def _v2_down(conn: sqlite3.Connection) -> None:
    for stmt in (
        "DROP TRIGGER IF EXISTS messages_fts_ai",
        "DROP TRIGGER IF EXISTS messages_fts_ad",
        "DROP TRIGGER IF EXISTS messages_fts_au",
        "DROP TABLE IF EXISTS messages_fts",
        "DROP TABLE IF EXISTS reminders",
        "DROP TABLE IF EXISTS known_agents",
        "DROP TABLE IF EXISTS agent_presence",
    ):
        conn.execute(stmt)


# Each commit batch writes every index page it touches to the WAL and fsyncs it. An
# index over all history keyed by recipient puts each agent's newest entry on its own
# leaf page, so a batch of N agents' sends dirtied ~N extra pages (measured: 76 WAL
# frames per 25-send commit, 43 after this). Only unacked messages need finding by
# recipient (recv, counts, redelivery, depths); that index stays a few pages small.
# The operator's inbox, paged over all history by the dashboard, keeps its own.
V4_UP = """
DROP INDEX IF EXISTS messages_inbox;
CREATE INDEX IF NOT EXISTS messages_unacked ON messages(recipient, delivered_at, id) WHERE acked_at IS NULL;
CREATE INDEX IF NOT EXISTS messages_to_operator ON messages(id) WHERE recipient = 'operator';
"""
V4_DOWN = """
DROP INDEX IF EXISTS messages_unacked;
DROP INDEX IF EXISTS messages_to_operator;
CREATE INDEX IF NOT EXISTS messages_inbox ON messages(recipient, acked_at, delivered_at, id);
"""

# Measured under the 32-agent benchmark: a commit of ~26 sends wrote ~67 WAL pages
# (strace: 135 pwrite calls per fsync), because two indexes put each send on a leaf
# page of its own: the recipient-first inbox index (one page per recipient once
# inboxes hold more than a few pages of unread messages) and the unique client-id
# index (client ids are random). Unacked messages are now indexed by id, which only
# ever appends, with recipient, delivered_at and acked_at (always NULL there, but
# sqlite 3.40 needs it listed to answer from the index alone) so recv, counts and
# depths read the index alone: they scan the unacked messages (all of them, in the
# worst case), never the history. Client ids are checked in memory (see dedup).
# Down restores the old indexes; the client-id one is no longer unique, since
# sends a window apart may share an id.
V5_UP = """
DROP INDEX IF EXISTS messages_unacked;
DROP INDEX IF EXISTS messages_client_id;
CREATE INDEX IF NOT EXISTS messages_open ON messages(id, recipient, delivered_at, acked_at) WHERE acked_at IS NULL;
"""
V5_DOWN = """
DROP INDEX IF EXISTS messages_open;
CREATE INDEX IF NOT EXISTS messages_unacked ON messages(recipient, delivered_at, id) WHERE acked_at IS NULL;
CREATE INDEX IF NOT EXISTS messages_client_id ON messages(sender, client_id, recipient)
    WHERE client_id IS NOT NULL;
"""

MIGRATIONS = Migrations(
    "broker",
    [
        Migration(1, "seed_tables", V1_SEED_TABLES, V1_DOWN),
        Migration(2, "delivery_reminders_registry_fts", _v2_up, _v2_down),
        Migration(3, "fts_indexed_off_the_send_path", search_index.V3_UP, search_index.V3_DOWN),
        Migration(4, "inbox_index_unacked_only", V4_UP, V4_DOWN),
        Migration(5, "send_path_indexes_append_only", V5_UP, V5_DOWN),
        Migration(6, "search_index_own_file", search_index.V6_UP, search_index.V6_DOWN),
    ],
)


# A reader checkpoints passively every second (background.Background.checkpoint), so
# copying pages into the db file stays off the commit path. But under steady writes a
# passive checkpoint never finds the WAL fully copied between two commits, and the WAL
# only restarts from its start when it does: with checkpoints left to the reader alone
# it grew to 339 MB in a 30,000-send benchmark, and every commit paid for growing a
# file. The writer's own checkpoint at this many pages (16 MiB) finishes what the
# reader left and lets the WAL restart; measured: median commit 600 us instead of 830.
WAL_CHECKPOINT_PAGES = 4000


class BrokerDatabase(Database):
    """broker.sqlite: NORMAL sync by default (an acknowledged send survives kill -9;
    HIVE_BROKER_SYNC=full adds an fsync per commit so it survives power loss too, see
    BrokerConfig.sync); checkpoints as described at WAL_CHECKPOINT_PAGES. Writes run on the
    event loop (hivewire.db, writer="loop"): nearly every broker request is a short
    write, and the two thread hops per batch cost more than its SQL (benchmarks.md)."""

    def __init__(self, path: Path | str, *, max_batch: int = 256, synchronous: Literal["FULL", "NORMAL"] = "NORMAL"
                 ) -> None:
        super().__init__(path, MIGRATIONS, synchronous=synchronous, label="broker", max_batch=max_batch,
                         autocheckpoint=WAL_CHECKPOINT_PAGES, on_batch=metrics.COMMIT_BATCH.observe, writer="loop")


def databases(settings: Settings) -> list[DatabaseSpec]:
    """Entry point `hive.databases`: broker.sqlite and its search index, for `hive migrate`."""
    from hive_broker.ledger import database_spec

    return [DatabaseSpec("broker", settings.broker_db, MIGRATIONS), *search_index.databases(settings.broker_search_db),
            database_spec(settings.home / "ledger.sqlite")]


def open_sync(path: Path | str) -> sqlite3.Connection:
    """A migrated connection for tools (CLI `hive vacuum`, tests)."""
    from hivewire.db import connect

    conn = connect(path, synchronous="FULL")
    MIGRATIONS.up(conn)
    return conn
