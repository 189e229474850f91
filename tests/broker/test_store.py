"""broker.sqlite migrations: fresh files, old (pre-versioning) files, `hive migrate`."""

from __future__ import annotations

from pathlib import Path

from hive_broker import search_index, store
from hivewire.db import connect
from hivewire.migrations import discover_databases
from hivewire.settings import Settings


def _columns(conn: object, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"SELECT * FROM pragma_table_info('{table}')")}  # type: ignore[attr-defined]


def test_old_seed_file_gains_columns_and_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "broker.sqlite"
    old = connect(path)
    old.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, sender TEXT NOT NULL, "
                "recipient TEXT NOT NULL, body TEXT NOT NULL, sent_at REAL NOT NULL, delivered_at REAL)")
    old.execute("CREATE TABLE approvals (id INTEGER PRIMARY KEY AUTOINCREMENT, agent TEXT NOT NULL, kind TEXT NOT NULL,"
                " commit_ref TEXT, requested_at REAL NOT NULL, status TEXT NOT NULL DEFAULT 'pending', "
                "resolved_at REAL, note TEXT)")
    old.execute("INSERT INTO messages(sender, recipient, body, sent_at) VALUES ('alice', 'bob', 'legacy wombat', 1.0)")
    old.execute("INSERT INTO approvals(agent, kind, commit_ref, requested_at) VALUES ('bob', 'spawn', NULL, 2.0)")
    old.close()

    conn = store.open_sync(path)
    assert {"acked_at", "client_id", "redelivery_count", "kind", "in_reply_to"} <= _columns(conn, "messages")
    assert "requested_by" in _columns(conn, "approvals")
    assert {"recipient", "answered_by"} <= _columns(conn, "operator_questions")
    row = conn.execute("SELECT body, redelivery_count, kind FROM messages").fetchone()
    assert tuple(row) == ("legacy wombat", 0, "message")
    assert conn.execute("SELECT COUNT(*) FROM approvals").fetchone()[0] == 1
    # the FTS index left this file (migration 6); the old row is searchable from the index's own
    assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE '%fts%'").fetchone()[0] == 0
    assert store.MIGRATIONS.current(conn) == store.MIGRATIONS.latest
    conn.close()
    idx = search_index.open_sync(tmp_path / "broker-search.sqlite", path)
    assert search_index.backlog(idx) == 1 and search_index.catch_up_sync(idx) == 1
    assert _hits(idx, "wombat") == [1]
    idx.close()


def _insert(conn: object, body: str) -> int:
    cur = conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO messages(sender, recipient, body, sent_at) VALUES ('a', 'b', ?, 1.0)", (body,))
    return int(cur.lastrowid)


def _hits(conn: object, word: str) -> list[int]:
    rows = conn.execute("SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?", (word,))  # type: ignore[attr-defined]
    return sorted(r[0] for r in rows)


def test_down_and_up_again(tmp_path: Path) -> None:
    conn = store.open_sync(tmp_path / "b.sqlite")
    _insert(conn, "kept quokka")
    while store.MIGRATIONS.current(conn) > 1:
        assert store.MIGRATIONS.down(conn) is not None
    store.MIGRATIONS.up(conn)
    assert conn.execute("SELECT body FROM messages").fetchone()[0] == "kept quokka"
    assert store.MIGRATIONS.current(conn) == store.MIGRATIONS.latest
    conn.close()


def test_down_from_v6_puts_the_index_back_with_every_row(tmp_path: Path) -> None:
    conn = store.open_sync(tmp_path / "b.sqlite")
    mid = _insert(conn, "late numbat")
    store.MIGRATIONS.down(conn)
    assert store.MIGRATIONS.current(conn) == 5
    assert _hits(conn, "numbat") == [mid]  # rebuilt, and counted as indexed, as v3 keeps it
    assert conn.execute("SELECT indexed_upto FROM fts_state").fetchone()[0] == mid
    later = _insert(conn, "later numbat")  # v3: not indexed on insert
    assert _hits(conn, "numbat") == [mid]
    while store.MIGRATIONS.current(conn) > 2:  # back to index-on-insert: rebuilt
        store.MIGRATIONS.down(conn)
    assert _hits(conn, "numbat") == [mid, later]
    conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")
    conn.close()


def test_registered_for_hive_migrate(settings: Settings) -> None:
    specs = {s.label: s.path for s in discover_databases(settings) if s.label.startswith("broker")}
    assert specs == {"broker": settings.broker_db, "broker-search": settings.broker_search_db}


def test_metric_names_follow_the_rules() -> None:
    from prometheus_client import REGISTRY

    from hive_broker import metrics  # noqa: F401  (registers)
    from hivewire.metrics import check_name

    problems = []
    for fam in REGISTRY.collect():
        if fam.name.startswith("hive_broker"):
            problems += check_name(fam.name + ("_total" if fam.type == "counter" else ""), fam.type)
    assert problems == []


def test_hot_queries_use_small_indexes_not_a_scan_of_all_history(tmp_path: Path) -> None:
    """recv, counts, depths, redelivery, the operator inbox and retention run often over a
    table holding 30 days of messages: none may scan it."""
    import sqlite3

    from hive_broker import messages, retention
    from hivewire.wire.broker import MessagesListRequest

    conn = store.open_sync(tmp_path / "b.sqlite")
    plans: list[str] = []
    real_execute = sqlite3.Connection.execute

    class Recorder(sqlite3.Connection):
        def execute(self, sql: str, params: object = (), /) -> sqlite3.Cursor:  # type: ignore[override]
            if sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
                for row in real_execute(self, "EXPLAIN QUERY PLAN " + sql, params):  # type: ignore[arg-type]
                    plans.append(f"{row[3]}    <- {sql[:70]}")
            return real_execute(self, sql, params)  # type: ignore[arg-type]

    rec = sqlite3.connect(tmp_path / "b.sqlite", factory=Recorder, isolation_level=None)
    rec.row_factory = sqlite3.Row
    from hive_broker.effects import Effects

    eff = Effects()
    messages.recv(rec, eff, "bob", 5, "inst-1", 1.0)
    messages.counts_unread(rec, "bob")
    messages.inbox_depths(rec)
    messages.agents_with_pending(rec)
    messages.redeliver_stale(rec, eff, 1.0)
    messages.redeliver_for_new_instance(rec, eff, "bob", "inst-2")
    messages.list_messages(rec, MessagesListRequest(recipient="operator"))
    messages.list_messages(rec, MessagesListRequest(recipient="bob", unread=True))
    assert plans, "nothing was recorded"
    scans = [p for p in plans if p.startswith("SCAN messages") and "USING" not in p]
    assert scans == [], "\n".join(plans)
    # a retention batch reads the first expired entries of its index, never sorts them all
    # (in id order, 200,000 expired messages cost 21.5 ms a batch instead of 0.36)
    plans.clear()
    retention.delete_batch(rec, 1.0)
    assert any("messages_acked" in p for p in plans) and not any("TEMP B-TREE" in p for p in plans), "\n".join(plans)
    conn.close()
