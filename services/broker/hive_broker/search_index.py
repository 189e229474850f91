"""Full-text search over message bodies: an FTS5 index in a file of its own.

Indexing a body in FTS5 costs more than storing the message (an insert trigger
made each send's write 2.5x slower), so sends only store rows and the index is
built afterwards, in bulk: by the background loop every second, and before
every operator search, so a search sees every message committed before it.

Since broker.sqlite's migration 6 the index lives in `broker-search.sqlite`
beside it, with a writer thread of its own (hivewire.db, writer="thread"). Its
SQL runs inside sqlite with the GIL released, so indexing never holds the
broker's event loop, which writes broker.sqlite. That matters once the index is
big: FTS5 merges its segments inside whichever insert crosses a threshold, and
at a million bodies 1 batch in 15 took over 10 ms (up to 46, and 120 with
other merge settings), which every send queued behind it waited (p99
send-to-wake at 1,000 msg/s right after a sustained flood, while the index
caught up: 6.2-8.7 ms, against 0.9-1.1 ms on its own thread). broker.sqlite is attached
read-only (as `b`) to every connection of the index, so each file keeps exactly
one writer.

The index is derived data: backups leave it out, and it is rebuilt from
broker.sqlite when lost or when broker.sqlite is not the file it was built from
(restored from an older backup, or another file put in its place).
`fts_state.indexed_upto` is the highest message id indexed (ids only grow:
AUTOINCREMENT). The FTS table keeps its own copy of each body (FTS5 "external
content" cannot name a table in another file, and sqlite 3.40's contentless
tables cannot delete a row without its original text), so messages deleted from
broker.sqlite (retention, `hive vacuum`) are pruned from the index by rowid
after each retention pass; until then a search cannot return them, since it
joins the messages table.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from hive_broker import metrics
from hivewire.db import Database, connect, in_batches
from hivewire.migrations import DatabaseSpec, Migration, Migrations

log = structlog.get_logger("hive_broker.search_index")

# One transaction of the index's own writer: sends never wait for it, but a search's
# catch-up does, and a batch bounds how long (1,000 bodies: ~1.3 ms plus any merge).
BATCH = 1000
PRUNE_BATCH = 5000  # index rows checked against broker.sqlite per prune transaction

# Migration 3 of broker.sqlite (history): the index, then still in broker.sqlite, built
# off the send path; `indexed_upto` counts rows the v2 rebuild already indexed.
V3_UP = """
DROP TRIGGER IF EXISTS messages_fts_ai;
DROP TRIGGER IF EXISTS messages_fts_ad;
DROP TRIGGER IF EXISTS messages_fts_au;
CREATE TABLE IF NOT EXISTS fts_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_upto INTEGER NOT NULL
);
INSERT OR IGNORE INTO fts_state(id, indexed_upto) VALUES (1, (SELECT COALESCE(MAX(id), 0) FROM messages));
CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages
WHEN old.id <= (SELECT indexed_upto FROM fts_state) BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
END;
CREATE TRIGGER messages_fts_au AFTER UPDATE OF body ON messages
WHEN old.id <= (SELECT indexed_upto FROM fts_state) BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
    INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body);
END;
"""

# Back to v2: index-on-insert triggers and a full rebuild.
V3_DOWN = """
DROP TRIGGER IF EXISTS messages_fts_ad;
DROP TRIGGER IF EXISTS messages_fts_au;
DROP TABLE IF EXISTS fts_state;
CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body);
END;
CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
END;
CREATE TRIGGER messages_fts_au AFTER UPDATE OF body ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
    INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body);
END;
INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');
"""


# Migration 6 of broker.sqlite: the index moves out to broker-search.sqlite (rebuilt
# there from the messages on first start). Down puts it back as migration 3 left it.
V6_UP = """
DROP TRIGGER IF EXISTS messages_fts_ad;
DROP TRIGGER IF EXISTS messages_fts_au;
DROP TABLE IF EXISTS messages_fts;
DROP TABLE IF EXISTS fts_state;
"""
V6_DOWN = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(body, content='messages', content_rowid='id');\n"
    + V3_UP
    + "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');\n"
)

FTS_TABLE = "CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(body)"
SEARCH_V1 = f"""
{FTS_TABLE};
CREATE TABLE IF NOT EXISTS fts_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_upto INTEGER NOT NULL
);
INSERT OR IGNORE INTO fts_state(id, indexed_upto) VALUES (1, 0);
"""
SEARCH_MIGRATIONS = Migrations(
    "broker-search",
    [Migration(1, "fts_index", SEARCH_V1, "DROP TABLE fts_state; DROP TABLE messages_fts;")],
)


def attach_broker(broker_db: Path | str) -> Callable[[sqlite3.Connection], None]:
    """The `on_connect` of the index's connections: broker.sqlite, read-only, as `b`."""
    uri = "file:" + str(Path(broker_db).absolute()).replace("?", "%3f").replace("#", "%23") + "?mode=ro"

    def attach(conn: sqlite3.Connection) -> None:
        conn.execute("ATTACH DATABASE ? AS b", (uri,))

    return attach


def indexed_upto(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT indexed_upto FROM fts_state").fetchone()[0])


def backlog(conn: sqlite3.Connection) -> int:
    """Messages stored but not yet searchable."""
    row = conn.execute("SELECT COUNT(*) FROM b.messages WHERE id > ?", (indexed_upto(conn),)).fetchone()
    return int(row[0])


def lag(conn: sqlite3.Connection) -> int:
    """At most how many messages are not yet searchable: the ids above the index (ids
    only grow). Cheap, unlike `backlog`, which counts the rows."""
    row = conn.execute("SELECT COALESCE((SELECT MAX(id) FROM b.messages), 0)").fetchone()
    return max(int(row[0]) - indexed_upto(conn), 0)


def index_batch(conn: sqlite3.Connection, limit: int = BATCH) -> int:
    """Index up to `limit` not-yet-indexed messages, oldest first; returns how many."""
    upto = indexed_upto(conn)
    top, n = conn.execute(
        "SELECT MAX(id), COUNT(*) FROM (SELECT id FROM b.messages WHERE id > ? ORDER BY id LIMIT ?)", (upto, limit)
    ).fetchone()
    if not n:
        return 0
    conn.execute(
        "INSERT INTO messages_fts(rowid, body) SELECT id, body FROM b.messages WHERE id > ? AND id <= ?", (upto, top)
    )
    conn.execute("UPDATE fts_state SET indexed_upto = ?", (top,))
    return int(n)


def prune_batch(conn: sqlite3.Connection, after: int, limit: int = PRUNE_BATCH) -> tuple[int, int]:
    """Of the next `limit` index rows above rowid `after`, drop those broker.sqlite no
    longer has. Returns (the last rowid checked, or -1 past the end; rows dropped)."""
    top = conn.execute(
        "SELECT MAX(rowid) FROM (SELECT rowid FROM messages_fts WHERE rowid > ? ORDER BY rowid LIMIT ?)", (after, limit)
    ).fetchone()[0]
    if top is None:
        return -1, 0
    cur = conn.execute(
        "DELETE FROM messages_fts WHERE rowid IN (SELECT rowid FROM messages_fts WHERE rowid > ? AND rowid <= ? "
        "AND NOT EXISTS (SELECT 1 FROM b.messages m WHERE m.id = messages_fts.rowid))",
        (after, top),
    )
    return int(top), cur.rowcount


def start_over_if_foreign(conn: sqlite3.Connection) -> int:
    """Empty the index if broker.sqlite is not the file it was built from: its ids stop
    below what the index holds (restored from an older backup), or its newest indexed
    messages have other bodies than the index's copies. Returns the rows dropped."""
    upto = indexed_upto(conn)
    if upto == 0:
        return 0
    seq = conn.execute(
        "SELECT MAX(COALESCE((SELECT seq FROM b.sqlite_sequence WHERE name = 'messages'), 0), "
        "COALESCE((SELECT MAX(id) FROM b.messages), 0))"
    ).fetchone()[0]
    differ = conn.execute(
        "SELECT COUNT(*) FROM (SELECT rowid, body FROM messages_fts ORDER BY rowid DESC LIMIT 16) f "
        "JOIN b.messages m ON m.id = f.rowid WHERE m.body IS NOT f.body"
    ).fetchone()[0]
    if seq >= upto and not differ:
        return 0
    n = int(conn.execute("SELECT COUNT(*) FROM messages_fts").fetchone()[0])
    conn.execute("DROP TABLE messages_fts")  # far faster than deleting row by row
    conn.execute(FTS_TABLE)
    conn.execute("UPDATE fts_state SET indexed_upto = 0")
    return n


def open_sync(search_db: Path | str, broker_db: Path | str) -> sqlite3.Connection:
    """A migrated index connection with broker.sqlite attached, for tools and tests."""
    conn = connect(search_db, synchronous="NORMAL")
    SEARCH_MIGRATIONS.up(conn)
    attach_broker(broker_db)(conn)
    return conn


def catch_up_sync(conn: sqlite3.Connection) -> int:
    """Index everything now on a connection from open_sync; each batch committed."""
    return in_batches(conn, index_batch, BATCH)


def databases(search_db: Path) -> list[DatabaseSpec]:
    return [DatabaseSpec("broker-search", search_db, SEARCH_MIGRATIONS)]


class SearchIndex:
    """broker-search.sqlite: its own writer thread (indexing, pruning) and reader threads
    (searches), every connection with broker.sqlite attached read-only."""

    def __init__(self, path: Path | str, broker_db: Path | str) -> None:
        self.path, self.broker_db = Path(path), Path(broker_db)
        self.db = self._database()

    def _database(self) -> Database:
        # NORMAL: a power loss can only cost index rows, which the next catch-up re-adds
        # (indexed_upto commits with them)
        return Database(self.path, SEARCH_MIGRATIONS, synchronous="NORMAL", label="broker-search",
                        on_connect=attach_broker(self.broker_db))

    async def open(self) -> None:
        """After broker.sqlite is open (migrated): the index attaches it. An index file
        sqlite cannot open (not a database, corrupt) is set aside and built anew: it is
        derived data, and must not keep the broker from starting."""
        try:
            await self.db.open()
        except sqlite3.DatabaseError as exc:
            await self.db.close()
            aside = self.path.with_name(f"{self.path.name}.broken-{int(time.time())}")
            for side in ("-wal", "-shm"):
                self.path.with_name(self.path.name + side).unlink(missing_ok=True)
            self.path.rename(aside)
            log.error("search_index_set_aside", error=str(exc), moved_to=str(aside))
            metrics.INDEX_REBUILDS.labels("unreadable").inc()
            self.db = self._database()
            await self.db.open()
        dropped = await self.db.write(start_over_if_foreign)
        if dropped:
            log.warning("search_index_rebuilt", dropped=dropped, reason="broker.sqlite is not the file it indexed")
            metrics.INDEX_REBUILDS.labels("foreign").inc()

    async def close(self) -> None:
        await self.db.close()

    async def lag(self) -> int:
        return await self.db.read(lag)

    async def index(self, limit: int = BATCH) -> int:
        """One batch, at most `limit` messages; returns how many."""
        return await self.db.write(lambda c: index_batch(c, limit))

    async def prune(self) -> int:
        """Drop every row broker.sqlite no longer has, one bounded transaction at a time."""
        after, total = 0, 0
        while after >= 0:
            after, n = await self.db.write(lambda c, a=after: prune_batch(c, a))
            total += n
        return total
