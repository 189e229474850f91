"""`hive migrate status|up|down` on real files, through the CLI a user types."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from hive_broker.store import MIGRATIONS


def hive(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HIVE_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "hivewire.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def version(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)
    finally:
        conn.close()


def test_status_up_down_round_trip(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    latest = MIGRATIONS.latest
    assert latest >= 2

    out = hive(home, "migrate", "status", "--db", "broker")
    assert out.returncode == 0, out.stderr
    assert "not created yet" in out.stdout

    # an old file from before versioning: the seed's messages table with one row
    db = home / "broker.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, sender TEXT NOT NULL, "
                 "recipient TEXT NOT NULL, body TEXT NOT NULL, sent_at REAL NOT NULL, delivered_at REAL)")
    conn.execute("INSERT INTO messages(sender, recipient, body, sent_at) VALUES ('alice', 'bob', 'kept', 1.0)")
    conn.commit()
    conn.close()

    out = hive(home, "migrate", "status", "--db", "broker")
    assert out.returncode == 0 and "1:" in out.stdout, out.stdout  # pending steps listed
    out = hive(home, "migrate", "up", "--db", "broker")
    assert out.returncode == 0, out.stderr
    assert version(db) == latest
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT body FROM messages").fetchall() == [("kept",)]
    conn.close()

    out = hive(home, "migrate", "down", "--db", "broker", "--yes")
    assert out.returncode == 0, out.stderr
    assert f"reverted {latest}:" in out.stdout
    assert version(db) == latest - 1
    out = hive(home, "migrate", "up")
    assert out.returncode == 0 and version(db) == latest

    out = hive(home, "migrate", "status", "--db", "nope")
    assert out.returncode == 2 and "no database labelled" in out.stderr
