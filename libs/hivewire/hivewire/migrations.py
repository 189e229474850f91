"""Versioned sqlite migrations with a `schema_version` table.

Each step runs in its own transaction and records itself; `down` undoes only
the latest step. `ensure_columns` is the seed's tolerant upgrade: an old file
(from before a column existed, or before versioning) gains the column and
keeps its rows.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import structlog

log = structlog.get_logger("hivewire.migrations")

Step = str | Callable[[sqlite3.Connection], None]

SCHEMA_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL
)"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: Step
    down: Step | None = None


@dataclass(frozen=True)
class StepStatus:
    version: int
    name: str
    applied_at: float | None


def statements(script: str) -> Iterator[str]:
    """Split a script into complete statements (triggers keep their `;`s)."""
    buf = ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n\t;"):
                yield buf.strip()
            buf = ""
    if buf.strip(" \n\t;"):
        raise ValueError(f"incomplete SQL statement: {buf.strip()[:80]!r}")


def _run(conn: sqlite3.Connection, step: Step) -> None:
    if callable(step):
        step(conn)
        return
    for stmt in statements(step):
        conn.execute(stmt)


def ensure_columns(conn: sqlite3.Connection, table: str, columns: dict[str, str]) -> list[str]:
    """Add each missing column (`name -> declaration`); returns those added."""
    have = {row[1] for row in conn.execute(f"SELECT * FROM pragma_table_info('{table}')")}
    added = []
    for name, decl in columns.items():
        if name not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
            added.append(name)
    if added:
        log.info("columns_added", table=table, columns=added)
    return added


class Migrations:
    def __init__(self, component: str, steps: list[Migration]) -> None:
        versions = [m.version for m in steps]
        if versions != sorted(set(versions)) or (versions and versions[0] < 1):
            raise ValueError(f"{component}: migration versions must be unique, ascending, >= 1")
        self.component = component
        self.steps = steps

    @property
    def latest(self) -> int:
        return self.steps[-1].version if self.steps else 0

    def current(self, conn: sqlite3.Connection) -> int:
        conn.execute(SCHEMA_TABLE)
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def status(self, conn: sqlite3.Connection) -> list[StepStatus]:
        conn.execute(SCHEMA_TABLE)
        applied = {v: t for v, t in conn.execute("SELECT version, applied_at FROM schema_version")}
        return [StepStatus(m.version, m.name, applied.get(m.version)) for m in self.steps]

    def up(self, conn: sqlite3.Connection, target: int | None = None) -> list[Migration]:
        """Apply pending steps up to `target` (default: latest)."""
        done = []
        current = self.current(conn)
        for m in self.steps:
            if m.version <= current or (target is not None and m.version > target):
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                _run(conn, m.up)
                conn.execute(
                    "INSERT INTO schema_version(version, name, applied_at) VALUES (?, ?, ?)",
                    (m.version, m.name, time.time()),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                log.error("migration_failed", component=self.component, version=m.version, name=m.name)
                raise
            log.info("migration_applied", component=self.component, version=m.version, name=m.name)
            done.append(m)
        return done

    def down(self, conn: sqlite3.Connection) -> Migration | None:
        """Undo the latest applied step, if it has a `down`."""
        current = self.current(conn)
        if current == 0:
            return None
        m = next((s for s in self.steps if s.version == current), None)
        if m is None:
            raise ValueError(f"{self.component}: applied version {current} is unknown to this build")
        if m.down is None:
            raise ValueError(f"{self.component}: step {m.version} ({m.name}) cannot be undone")
        conn.execute("BEGIN IMMEDIATE")
        try:
            _run(conn, m.down)
            conn.execute("DELETE FROM schema_version WHERE version = ?", (m.version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("migration_reverted", component=self.component, version=m.version, name=m.name)
        return m


@dataclass(frozen=True)
class DatabaseSpec:
    """One sqlite file a service owns, for `hive migrate` and backups."""

    label: str
    path: object  # pathlib.Path; kept loose so services need not import it here
    migrations: Migrations


def discover_databases(settings: object) -> list[DatabaseSpec]:
    """Every database registered under the `hive.databases` entry point group."""
    from importlib.metadata import entry_points

    specs: list[DatabaseSpec] = []
    for ep in entry_points(group="hive.databases"):
        try:
            specs.extend(ep.load()(settings))
        except Exception as exc:  # one broken plugin must not hide the others
            log.error("database_discovery_failed", entry_point=ep.name, error=str(exc))
    return specs
