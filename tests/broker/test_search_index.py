"""The full-text index in its own file (broker-search.sqlite): built from broker.sqlite,
pruned of what it deletes, rebuilt when the file behind it changes, and never on the
broker's event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from hive_broker import search_index, store
from hive_broker.service import BrokerService
from hivewire.nats_transport import NatsTransport
from hivewire.settings import Settings
from hivewire.wire import broker as w
from hivewire.wire import ops

from .conftest import FAST, Bus


def _insert(conn: sqlite3.Connection, body: str) -> int:
    cur = conn.execute("INSERT INTO messages(sender, recipient, body, sent_at) VALUES ('a', 'b', ?, 1.0)", (body,))
    return int(cur.lastrowid or 0)


def _hits(conn: sqlite3.Connection, word: str) -> list[int]:
    rows = conn.execute("SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?", (word,))
    return sorted(r[0] for r in rows)


def test_built_in_its_own_file_which_cannot_write_broker_sqlite(tmp_path: Path) -> None:
    conn = store.open_sync(tmp_path / "b.sqlite")
    idx = search_index.open_sync(tmp_path / "s.sqlite", tmp_path / "b.sqlite")
    first = _insert(conn, "echidna one")
    assert _hits(idx, "echidna") == [] and search_index.backlog(idx) == 1 and search_index.lag(idx) == 1
    assert search_index.catch_up_sync(idx) == 1
    _insert(conn, "echidna two")
    assert _hits(idx, "echidna") == [first] and search_index.indexed_upto(idx) == first
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        idx.execute("DELETE FROM b.messages")
    assert conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 2
    # a backlog larger than one batch is indexed in several
    for i in range(25):
        _insert(conn, f"wallaby {i}")
    idx.execute("BEGIN")
    assert search_index.index_batch(idx, limit=10) == 10
    idx.execute("COMMIT")
    assert len(_hits(idx, "wallaby")) == 9 and search_index.backlog(idx) == 16  # echidna two went first
    assert search_index.catch_up_sync(idx) == 16
    assert len(_hits(idx, "wallaby")) == 25 and search_index.lag(idx) == 0
    idx.close()
    conn.close()


def test_rows_deleted_from_broker_sqlite_are_pruned_batch_by_batch(tmp_path: Path) -> None:
    conn = store.open_sync(tmp_path / "b.sqlite")
    idx = search_index.open_sync(tmp_path / "s.sqlite", tmp_path / "b.sqlite")
    ids = [_insert(conn, f"bandicoot {i}") for i in range(12)]
    assert search_index.catch_up_sync(idx) == 12
    gone = ids[1:4] + ids[7:9] + ids[11:]
    conn.execute(f"DELETE FROM messages WHERE id IN ({','.join(map(str, gone))})")
    after, dropped = 0, []
    while after >= 0:  # 5 index rows per transaction: 3 batches, then the end
        after, n = search_index.prune_batch(idx, after, limit=5)
        dropped.append(n)
    assert dropped == [3, 2, 1, 0]
    assert _hits(idx, "bandicoot") == sorted(set(ids) - set(gone))
    idx.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")
    idx.close()
    conn.close()


def _restore(path: Path, bodies: list[str]) -> None:
    """Put another broker.sqlite in place (a restore, or a file from elsewhere)."""
    for p in path.parent.glob(path.name + "*"):
        p.unlink()
    conn = store.open_sync(path)
    for body in bodies:
        _insert(conn, body)
    conn.close()


@pytest.mark.parametrize("case", ["older backup", "other file, more ids"])
def test_an_index_of_another_broker_file_starts_over(tmp_path: Path, case: str) -> None:
    b, s = tmp_path / "b.sqlite", tmp_path / "s.sqlite"
    _restore(b, ["bilby 1", "bilby 2", "bilby 3"])
    idx = search_index.open_sync(s, b)
    assert search_index.catch_up_sync(idx) == 3
    assert search_index.start_over_if_foreign(idx) == 0  # the same file: kept
    idx.close()
    # an older backup stops below the index; another file may reuse its ids for other bodies
    _restore(b, ["potoroo"] if case == "older backup" else ["potoroo", "quoll", "quokka", "numbat"])
    idx = search_index.open_sync(s, b)
    assert search_index.start_over_if_foreign(idx) == 3 and search_index.indexed_upto(idx) == 0
    assert search_index.catch_up_sync(idx) >= 1
    assert _hits(idx, "bilby") == [] and _hits(idx, "potoroo") == [1]
    idx.close()


async def test_opening_on_another_broker_file_starts_over_and_counts_it(tmp_path: Path) -> None:
    b, s = tmp_path / "b.sqlite", tmp_path / "s.sqlite"
    _restore(b, ["bilby 1", "bilby 2"])
    idx = search_index.open_sync(s, b)
    assert search_index.catch_up_sync(idx) == 2
    idx.close()
    _restore(b, ["potoroo"])
    before = REGISTRY.get_sample_value("hive_broker_search_index_rebuilds_total", {"reason": "foreign"}) or 0.0
    index = search_index.SearchIndex(s, b)
    await index.open()
    try:
        assert REGISTRY.get_sample_value("hive_broker_search_index_rebuilds_total", {"reason": "foreign"}) == before + 1
        assert await index.lag() == 1 and await index.index() == 1
    finally:
        await index.close()


# --- in the service ---------------------------------------------------------------
async def test_sends_are_answered_while_an_index_batch_holds_the_index(
    broker: BrokerService, bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index batch (a big FTS5 merge, say) runs on the index's own thread: the broker's
    loop, and so every send, goes on meanwhile."""
    real = search_index.index_batch
    entered, release = threading.Event(), threading.Event()

    def slow_batch(conn: sqlite3.Connection, limit: int = search_index.BATCH) -> int:
        entered.set()
        release.wait(10)  # blocks whichever thread runs it
        return real(conn, limit)

    await bus.send("alice", "bob", "dingo before")
    monkeypatch.setattr(search_index, "index_batch", slow_batch)
    indexing = asyncio.create_task(broker.background.index_messages())
    assert await asyncio.to_thread(entered.wait, 5)
    t0 = time.monotonic()
    sent = [await bus.send("alice", "bob", f"dingo {i}") for i in range(5)]
    assert time.monotonic() - t0 < 2.0 and len({s.id for s in sent}) == 5
    assert not indexing.done()
    release.set()
    assert await asyncio.wait_for(indexing, 5) >= 1
    monkeypatch.setattr(search_index, "index_batch", real)
    found = await bus.operator(ops.MESSAGES_SEARCH, w.MessagesSearchRequest(query="dingo", limit=10))
    assert len(found.messages) == 6


async def test_retention_prunes_the_index_and_a_lost_index_is_rebuilt(
    nats_transport: NatsTransport, settings: Settings, nats_url: str
) -> None:
    svc = BrokerService(nats_transport, settings, config=FAST)
    await svc.start()
    t = await NatsTransport.connect(nats_url, name="search-index-test", forever=False)
    bus = Bus(t)
    try:
        await bus.register("alice", "bob")
        done = await bus.send("alice", "bob", "old kookaburra")
        await bus.send("alice", "bob", "open kookaburra")
        await bus.recv("bob")
        await bus.ack("bob", [done.id])
        await svc.background.index_messages()
        assert await svc.background.retention_pass(time.time() + 31 * 86400) == 1
        rows = await svc.search.db.read(lambda c: [r[0] for r in c.execute("SELECT body FROM messages_fts")])
        assert rows == ["open kookaburra"]  # the acked one left the index too
    finally:
        await svc.stop()
    for p in settings.home.glob("broker-search.sqlite*"):
        p.unlink()
    svc = BrokerService(nats_transport, settings, config=FAST)
    await svc.start()
    try:
        found = await bus.operator(ops.MESSAGES_SEARCH, w.MessagesSearchRequest(query="kookaburra"))
        assert [m.body for m in found.messages] == ["open kookaburra"]
        assert settings.broker_search_db.exists()
    finally:
        await t.close()
        await svc.stop()


async def test_an_index_file_sqlite_cannot_open_is_set_aside_and_rebuilt(
    nats_transport: NatsTransport, settings: Settings, nats_url: str
) -> None:
    store.open_sync(settings.broker_db).close()
    conn = sqlite3.connect(settings.broker_db)
    conn.execute("INSERT INTO messages(sender, recipient, body, sent_at) VALUES ('alice', 'bob', 'emu kept', 1.0)")
    conn.commit()
    conn.close()
    settings.broker_search_db.write_bytes(b"not a database at all, " * 100)
    before = REGISTRY.get_sample_value("hive_broker_search_index_rebuilds_total", {"reason": "unreadable"}) or 0.0
    svc = BrokerService(nats_transport, settings, config=FAST)
    await svc.start()  # the broker starts all the same
    t = await NatsTransport.connect(nats_url, name="search-index-test", forever=False)
    try:
        found = await Bus(t).operator(ops.MESSAGES_SEARCH, w.MessagesSearchRequest(query="emu"))
        assert [m.body for m in found.messages] == ["emu kept"]
        aside = list(settings.home.glob("broker-search.sqlite.broken-*"))
        assert len(aside) == 1 and aside[0].read_bytes().startswith(b"not a database")
        after = REGISTRY.get_sample_value("hive_broker_search_index_rebuilds_total", {"reason": "unreadable"})
        assert after == before + 1
    finally:
        await t.close()
        await svc.stop()
