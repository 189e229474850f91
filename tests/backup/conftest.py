"""Fixtures for the backup tests: a populated HIVE_HOME and a config."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from hive_backup.config import Config, parse_config
from hivewire.db import connect

SECRET = "sk-ant-SUPERSECRET-0123456789"


def make_db(path: Path, rows: int = 100) -> None:
    conn = connect(path)
    conn.executescript(
        """CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT, applied_at REAL);
        INSERT OR IGNORE INTO schema_version VALUES (3, 'three', 0);
        CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, body TEXT NOT NULL);"""
    )
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO messages(body) VALUES (?)", [(f"message {i} " + "x" * 50,) for i in range(rows)])
    conn.execute("COMMIT")
    conn.close()


def make_repo(path: Path) -> None:
    path.mkdir(parents=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=env)
    (path / "flake.nix").write_text("{ }\n")
    subprocess.run(["git", "-C", str(path), "add", "."], check=True, env=env)
    subprocess.run(["git", "-C", str(path), "commit", "-qm", "first"], check=True, env=env)
    subprocess.run(["git", "-C", str(path), "tag", "deployed"], check=True, env=env)


def write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "hive"
    h.mkdir()
    return populate(h)


def populate(h: Path) -> Path:
    """A HIVE_HOME with the real layout (docs/backup.md)."""
    make_db(h / "broker.sqlite", 200)
    make_db(h / "agents/alpha/state/events.sqlite", 50)
    make_db(h / "agents/alpha/state/turn-stats.sqlite", 10)
    (h / "agents/alpha/state/model").write_text("opus\n")
    make_repo(h / "agents/alpha/config")
    make_repo(h / "applied/alpha")
    make_repo(h / "meta")
    write_secret(h / "agents/alpha/creds/.credentials.json", f'{{"token": "{SECRET}"}}')
    write_secret(h / "operator.token", "op-token-TOPSECRET\n")
    (h / "sessions/abc").mkdir(parents=True)
    (h / "sessions/abc/out.txt").write_text("session output\n")
    return h


@pytest.fixture
def cfg() -> Config:
    return parse_config("[scheduler]\nenabled = false\n")


def rows(path: Path, table: str = "messages") -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def side_files(db: Path) -> list[str]:
    """The -wal/-shm/-journal files present beside `db`."""
    return [s for s in ("-wal", "-shm", "-journal") if os.path.exists(f"{db}{s}")]
