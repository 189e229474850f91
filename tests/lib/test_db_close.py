"""Closing a Database while a read whose caller gave up still runs on its pool thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from hivewire.db import Database
from hivewire.migrations import Migration, Migrations

STEPS = Migrations("close-test", [Migration(1, "t", "CREATE TABLE t (x INTEGER)")])


async def test_close_waits_for_a_read_whose_caller_was_cancelled(tmp_path: Path) -> None:
    db = await Database(tmp_path / "c.sqlite", STEPS).open()
    started, events = threading.Event(), []

    def slow(conn: sqlite3.Connection) -> int:
        started.set()
        time.sleep(0.3)  # the statement's connection must stay open until this returns
        n = conn.execute("SELECT count(*) FROM t").fetchone()[0]
        events.append("read done")
        return int(n)

    reading = asyncio.create_task(db.read(slow))
    await asyncio.to_thread(started.wait, 5)
    reading.cancel()  # the caller gives up; the pool thread goes on
    await db.close()
    events.append("closed")
    assert events == ["read done", "closed"]
