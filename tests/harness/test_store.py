"""Harness stores: events broadcast-only fallback, tolerant turn-stats migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hive_harness.store import EventStore, TurnStatsStore
from hivewire.wire.agent import TurnStats


async def test_events_db_that_cannot_open_means_broadcast_only(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = EventStore(blocker / "events.sqlite")  # parent is a file: cannot open
    assert await store.open() is False
    assert await store.append(1.0, "note", {"text": "hi"}) is None
    assert await store.history(10, None) == []


async def test_events_history_pages_backwards(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite")
    assert await store.open()
    ids = [await store.append(float(i), "note", {"i": i}) for i in range(5)]
    page = await store.history(2, None)
    assert [e.id for e in page] == [ids[4], ids[3]]
    page2 = await store.history(2, page[-1].id)
    assert [e.payload["i"] for e in page2] == [2, 1]
    await store.close()


async def test_turn_stats_old_file_gains_columns_and_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "turn-stats.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE turn_stats (id INTEGER PRIMARY KEY AUTOINCREMENT, agent TEXT, model TEXT,"
                 " input_tokens INTEGER)")
    conn.execute("INSERT INTO turn_stats(agent, model, input_tokens) VALUES ('alice', 'haiku', 7)")
    conn.commit()
    conn.close()
    store = TurnStatsStore(path)
    await store.open()
    await store.record(TurnStats(agent="alice", model="haiku", wake_from="bob", result_kind="ok", started_at=1,
                                 ended_at=2, duration_ms=1000, last_input_tokens=5))
    rows = await store.last(5)
    assert [r.last_input_tokens for r in rows] == [5, 0]  # pre-migration row: zeros
    assert rows[1].input_tokens == 7
    await store.close()
