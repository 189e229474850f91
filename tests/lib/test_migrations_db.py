import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from hivewire.db import Database, Writer, connect
from hivewire.migrations import Migration, Migrations, ensure_columns, statements
from tests.support.procs import wait_for

STEPS = Migrations(
    "test",
    [
        Migration(1, "items", "CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT NOT NULL)", "DROP TABLE items"),
        Migration(
            2,
            "items_log",
            """CREATE TABLE log (id INTEGER PRIMARY KEY, item INTEGER);
               CREATE TRIGGER items_ai AFTER INSERT ON items BEGIN INSERT INTO log(item) VALUES (new.id); END;""",
            "DROP TRIGGER items_ai; DROP TABLE log",
        ),
    ],
)


def test_statements_keep_trigger_bodies_whole() -> None:
    parts = list(statements("CREATE TABLE a(x); CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; SELECT 2; END;"))
    assert len(parts) == 2
    assert parts[1].endswith("END;")


def test_up_status_down(tmp_path: Path) -> None:
    conn = connect(tmp_path / "x.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert [m.version for m in STEPS.up(conn)] == [1, 2]
    assert STEPS.current(conn) == 2
    assert STEPS.up(conn) == []
    conn.execute("INSERT INTO items(v) VALUES ('a')")
    assert conn.execute("SELECT COUNT(*) FROM log").fetchone()[0] == 1
    reverted = STEPS.down(conn)
    assert reverted is not None and reverted.version == 2
    assert STEPS.current(conn) == 1
    assert [s.applied_at is None for s in STEPS.status(conn)] == [False, True]
    assert conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 1  # down of step 2 kept step-1 data


def test_failed_step_leaves_file_unchanged(tmp_path: Path) -> None:
    bad = Migrations("bad", [STEPS.steps[0], Migration(2, "broken", "CREATE TABLE ok(x); CREATE TABLE items(y)")])
    conn = connect(tmp_path / "x.sqlite")
    with pytest.raises(sqlite3.OperationalError):
        bad.up(conn)
    assert bad.current(conn) == 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "ok" not in tables


def test_ensure_columns_upgrades_an_old_file_without_losing_rows(tmp_path: Path) -> None:
    conn = connect(tmp_path / "old.sqlite")
    conn.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO messages(body) VALUES ('kept')")
    added = ensure_columns(conn, "messages", {"body": "TEXT", "acked_at": "REAL", "redeliveries": "INTEGER DEFAULT 0"})
    assert added == ["acked_at", "redeliveries"]
    assert ensure_columns(conn, "messages", {"acked_at": "REAL"}) == []
    assert tuple(conn.execute("SELECT body, redeliveries FROM messages").fetchone()) == ("kept", 0)


@pytest.mark.parametrize("writer", ["thread", "loop"])
async def test_concurrent_writes_are_batched_and_isolated(tmp_path: Path, writer: Writer) -> None:
    db = await Database(tmp_path / "b.sqlite", STEPS, writer=writer).open()

    def insert(v: str) -> int:
        def job(conn: sqlite3.Connection) -> int:
            if v == "bad":
                conn.execute("INSERT INTO items(v) VALUES ('partial')")
                raise ValueError("rejected")
            return int(conn.execute("INSERT INTO items(v) VALUES (?)", (v,)).lastrowid or 0)

        return job  # type: ignore[return-value]

    results = await asyncio.gather(*(db.write(insert(str(i))) for i in range(50)), db.write(insert("bad")),
                                   return_exceptions=True)
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and str(errors[0]) == "rejected"
    count = await db.read(lambda c: c.execute("SELECT COUNT(*) FROM items").fetchone()[0])
    assert count == 50  # the failing job's partial insert was rolled back alone
    assert await db.read(lambda c: c.execute("SELECT COUNT(*) FROM items WHERE v='partial'").fetchone()[0]) == 0
    await db.close()
    # committed means on disk: a fresh connection sees every row
    assert connect(tmp_path / "b.sqlite").execute("SELECT COUNT(*) FROM items").fetchone()[0] == 50


@pytest.mark.parametrize("writer", ["thread", "loop"])
async def test_on_connect_runs_on_the_writer_and_every_reader(tmp_path: Path, writer: Writer) -> None:
    """The hook a file uses to ATTACH another one (the broker's search index attaches
    broker.sqlite read-only): every connection, writer and readers, gets it."""
    other = connect(tmp_path / "other.sqlite")
    other.execute("CREATE TABLE src (v TEXT)")
    other.execute("INSERT INTO src VALUES ('from the other file')")
    other.close()
    seen: list[int] = []

    def attach(conn: sqlite3.Connection) -> None:
        seen.append(id(conn))
        conn.execute("ATTACH DATABASE ? AS o", (f"file:{tmp_path / 'other.sqlite'}?mode=ro",))

    db = await Database(tmp_path / "b.sqlite", STEPS, writer=writer, on_connect=attach).open()
    await db.write(lambda c: c.execute("INSERT INTO items(v) SELECT v FROM o.src"))
    reads = await asyncio.gather(*(db.read(lambda c: c.execute(
        "SELECT (SELECT v FROM items), (SELECT COUNT(*) FROM o.src)").fetchone()[:]) for _ in range(8)))
    assert set(reads) == {("from the other file", 1)}
    assert len(seen) == len(set(seen)) and len(seen) >= 2  # the writer, and each reader thread once
    await db.close()


@pytest.mark.parametrize("writer", ["thread", "loop"])
@pytest.mark.parametrize("pages", [False, 40])
async def test_writer_checkpoint_bounds_the_wal_under_steady_writes(tmp_path: Path, pages: bool | int,
                                                                     writer: Writer) -> None:
    """False leaves checkpoints to the owner (none here), so the WAL grows with every
    commit; a page count makes the writer checkpoint and restart the WAL from its start."""
    path = tmp_path / "w.sqlite"
    db = await Database(path, STEPS, autocheckpoint=pages, writer=writer).open()
    blob = "x" * 3000  # about one page per row
    for _ in range(200):
        await db.write(lambda c: c.execute("INSERT INTO items(v) VALUES (?)", (blob,)))
    wal_pages = await db.read(lambda c: os.path.getsize(f"{path}-wal")) // 4096
    await db.close()
    if pages is False:
        assert wal_pages >= 200
    else:
        assert wal_pages <= pages + 5


async def test_loop_writer_runs_one_batch_per_pass_on_the_loop_thread(tmp_path: Path) -> None:
    """writer="loop": the jobs queued in one pass share one transaction, run on the
    event loop's own thread, and none starts before the pass that queued it ends."""
    import threading

    sizes: list[int] = []
    db = await Database(tmp_path / "l.sqlite", STEPS, writer="loop", on_batch=sizes.append).open()
    threads: set[int] = set()

    def job(conn: sqlite3.Connection) -> int:
        threads.add(threading.get_ident())
        return int(conn.execute("INSERT INTO items(v) VALUES ('x')").lastrowid or 0)

    futures = [asyncio.ensure_future(db.write(job)) for _ in range(20)]
    await asyncio.sleep(0)  # the writes queue their jobs in this pass...
    assert sizes == [] and not threads  # ...and nothing has run yet
    ids = await asyncio.gather(*futures)
    assert sizes == [20] and threads == {threading.get_ident()}
    assert sorted(ids) == list(range(1, 21))
    await db.close()


async def test_loop_writer_failed_commit_fails_every_job_and_changes_nothing(tmp_path: Path) -> None:
    """A deferred foreign key fails the COMMIT itself: every job of the batch gets the
    error (none was durable), the file is unchanged, and the next batch works."""
    db = await Database(tmp_path / "f.sqlite", STEPS, writer="loop").open()
    await db.write(lambda c: c.execute(
        "CREATE TABLE child (id INTEGER PRIMARY KEY, item INTEGER REFERENCES items(id) DEFERRABLE INITIALLY DEFERRED)"
    ))
    good = db.write(lambda c: c.execute("INSERT INTO items(v) VALUES ('in the failed batch')").lastrowid)
    orphan = db.write(lambda c: c.execute("INSERT INTO child(item) VALUES (999)").lastrowid)
    results = await asyncio.gather(good, orphan, return_exceptions=True)
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results), results
    assert await db.read(lambda c: c.execute("SELECT COUNT(*) FROM items").fetchone()[0]) == 0
    assert await db.write(lambda c: c.execute("INSERT INTO items(v) VALUES ('after')").lastrowid) == 1
    await db.close()
    with pytest.raises(RuntimeError, match="not open"):
        await db.write(lambda c: None)


async def test_loop_writer_close_runs_what_is_already_queued(tmp_path: Path) -> None:
    db = await Database(tmp_path / "c.sqlite", STEPS, writer="loop").open()
    queued = asyncio.ensure_future(db.write(lambda c: c.execute("INSERT INTO items(v) VALUES ('q')").lastrowid))
    await asyncio.sleep(0)
    await db.close()
    assert await queued == 1
    assert connect(tmp_path / "c.sqlite").execute("SELECT v FROM items").fetchall()[0][0] == "q"


async def test_loop_writer_waits_for_a_locked_file_with_the_loop_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds the write lock: the loop writer's job waits without
    blocking the loop, lands once the lock is free, and fails (changing nothing)
    when the lock is held past the busy timeout."""
    import hivewire.db

    monkeypatch.setattr(hivewire.db, "BUSY_TIMEOUT_MS", 400)
    path = tmp_path / "busy.sqlite"
    db = await Database(path, STEPS, writer="loop").open()
    other = sqlite3.connect(path, isolation_level=None)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    tick_task = asyncio.create_task(ticker())
    other.execute("BEGIN IMMEDIATE")
    write = asyncio.ensure_future(db.write(lambda c: c.execute("INSERT INTO items(v) VALUES ('waited')").lastrowid))
    async def busy() -> bool:  # barrier: the writer met the lock and went back to the loop
        return db._busy_since is not None

    await wait_for(busy, timeout=2, interval=0.005)
    seen = ticks

    async def ran_on() -> bool:  # barrier: the loop ran on while the write waited
        return ticks >= seen + 5

    await wait_for(ran_on, timeout=2, interval=0.005)
    assert not write.done()  # still waiting for the lock, not failed nor done
    other.execute("COMMIT")
    assert await asyncio.wait_for(write, 1.0) == 1

    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await asyncio.wait_for(db.write(lambda c: c.execute("INSERT INTO items(v) VALUES ('lost')")), 2.0)
    other.execute("COMMIT")
    tick_task.cancel()
    assert await db.read(lambda c: [r[0] for r in c.execute("SELECT v FROM items")]) == ["waited"]
    assert await db.write(lambda c: c.execute("INSERT INTO items(v) VALUES ('after')").lastrowid) == 2
    await db.close()
    other.close()


def test_in_batches_pause_lets_another_writer_in(tmp_path: Path) -> None:
    """A tool's long sweep beside a service: with `pause_s` the service's writer (here
    a plain connection with the usual busy timeout) gets the lock between batches
    instead of waiting for the whole sweep."""
    import threading
    import time

    from hivewire.db import in_batches

    path = tmp_path / "p.sqlite"
    conn = connect(path)
    STEPS.up(conn)
    conn.executemany("INSERT INTO items(v) VALUES (?)", [(f"old{i}",) for i in range(60)])
    done_at: dict[str, float] = {}

    def step(c: sqlite3.Connection) -> int:
        time.sleep(0.01)  # a batch that holds the lock a while
        return c.execute("DELETE FROM items WHERE id IN (SELECT id FROM items WHERE v LIKE 'old%' LIMIT 2)").rowcount

    def sweep() -> None:
        in_batches(connect(path), step, 2, pause_s=0.01)
        done_at["sweep"] = time.monotonic()

    t = threading.Thread(target=sweep)
    t.start()
    time.sleep(0.05)  # the sweep is under way (30 batches, about 0.6 s)
    service = connect(path)
    service.execute("BEGIN IMMEDIATE")
    service.execute("INSERT INTO items(v) VALUES ('service')")
    service.execute("COMMIT")
    done_at["service"] = time.monotonic()
    t.join()
    assert done_at["service"] < done_at["sweep"]  # it got in between two batches
    assert [r[0] for r in conn.execute("SELECT v FROM items")] == ["service"]


def test_in_batches_commits_each_step_and_rolls_back_only_a_failing_one(tmp_path: Path) -> None:
    from hivewire.db import in_batches

    conn = connect(tmp_path / "t.sqlite")
    STEPS.up(conn)
    for i in range(25):
        conn.execute("INSERT INTO items(v) VALUES (?)", (f"old{i}",))

    def delete_ten(c: sqlite3.Connection) -> int:
        return c.execute("DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY id LIMIT 10)").rowcount

    seen: list[int] = []
    assert in_batches(conn, delete_ten, 10, progress=seen.append) == 25  # 10 + 10 + 5, the short step ends it
    assert seen == [10, 20, 25]
    conn.execute("INSERT INTO items(v) VALUES ('kept')")

    def fail(c: sqlite3.Connection) -> int:
        c.execute("DELETE FROM items")
        raise RuntimeError("disk says no")

    with pytest.raises(RuntimeError):
        in_batches(conn, fail, 10)
    assert not conn.in_transaction
    assert conn.execute("SELECT v FROM items").fetchall()[0][0] == "kept"
