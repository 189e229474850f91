"""Host-side events retention on a 100k-row db, and the startup migration marker."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from hive_deployer import git, migrate, retention
from hive_deployer.layout import Layout
from hive_deployer.store import Store
from hivewire.wire import ops
from hivewire.wire.common import Empty


def make_events(path: Path, n: int, old: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT, payload_json TEXT)")
    now = time.time()
    rows = ((i, now - 10 * 86400 if i <= old else now - (n - i), "note", "{}") for i in range(1, n + 1))
    conn.executemany("INSERT INTO events VALUES (?,?,?,?)", rows)
    conn.commit()
    conn.close()


def test_retention_on_100k_rows(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    make_events(layout.events_db("alice"), 100_000, old=30_000)
    make_events(layout.events_db("bob"), 1_500, old=1_000)  # few rows: only age applies
    out = retention.sweep(layout, retention.Policy())
    assert out[str(layout.events_db("alice"))] == (30_000, 68_000)
    assert out[str(layout.events_db("bob"))] == (1_000, 0)
    conn = sqlite3.connect(layout.events_db("alice"))
    count, lo, hi = conn.execute("SELECT COUNT(*), MIN(id), MAX(id) FROM events").fetchone()
    assert (count, lo, hi) == (2000, 98_001, 100_000)
    conn.close()
    # configurable, and a second sweep is a no-op
    assert retention.sweep(layout, retention.Policy())[str(layout.events_db("alice"))] == (0, 0)
    assert retention.sweep(layout, retention.Policy(keep=10))[str(layout.events_db("alice"))] == (0, 1990)
    p = retention.Policy.from_env({"HIVE_EVENTS_MAX_AGE_DAYS": "1", "HIVE_EVENTS_KEEP": "5"})
    assert (p.max_age_days, p.keep) == (1.0, 5)


async def test_startup_migration_marker(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    (tmp_path / "agents/old/state").mkdir(parents=True)
    (tmp_path / "agents/Bad..name").mkdir(parents=True)  # never adopted: not a valid name
    store = await Store(layout).open()
    try:
        assert await migrate.run(layout, store, "process") == ["old"]
        migrate.mark(layout)
        assert migrate.done(layout) and layout.marker.read_text().strip() == migrate.VERSION
        assert git.head(layout.applied("old")) and (await store.agent("old")).deployed_tag == "deployed/0"
        # re-running is safe: nothing to adopt again
        layout.marker.unlink()
        assert await migrate.run(layout, store, "process") == []
        assert [r.name for r in await store.agents()] == ["old"]
    finally:
        await store.close()


async def test_service_runs_migration_once(make_deployer, hive_home: Path) -> None:
    (hive_home / "agents/legacy/state").mkdir(parents=True)
    env = await make_deployer()
    assert (hive_home / ".deployer-migration-done").is_file()
    lst = await env.call(ops.DEPLOYER_LIST, Empty())
    assert [(a.name, a.state) for a in lst.agents] == [("legacy", "stopped")]
    assert git.log_subjects(hive_home / "meta", 1) == ["startup migration: re-render meta"]
