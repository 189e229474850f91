"""The last words of an agent whose harness does not answer (issue 23).

`hive.deployer.history` and `hive.deployer.turn_stats` read the agent's
events.sqlite / turn-stats.sqlite on the host, for stopped, crashed and
destroyed-but-kept agents: the same `HistoryReply` as `ctl.history`, and turn
rows as `TurnStats`.

Read-only: the name is validated by the layout helpers before any path is
built; a file that is missing is `not_found` (never created: sqlite opens it
by a `mode=ro` URI, so the database is never written either; reading a WAL
database does leave its `-wal`/`-shm` beside it, as for any reader, which the
harness would create anyway); a path that is a symlink, or under an
agent or state directory that is one, is refused (the agent can write its
state dir, the deployer must not read what it points at); every query is
bounded (at most MAX_LIMIT rows).
"""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import structlog

from hive_deployer import metrics
from hive_deployer.layout import Layout
from hivewire.errors import HiveError
from hivewire.wire.agent import LiveEvent, TurnStats

log = structlog.get_logger("hive_deployer.history")

MAX_LIMIT = 2000
TURN_FIELDS = frozenset(f.name for f in msgspec.structs.fields(TurnStats))


def _checked(layout: Layout, name: str, filename: str) -> Path:
    """The agent's state file, or a HiveError; nothing followed that the agent could have planted."""
    state = layout.state(name)  # validates the name
    for p in (layout.agent_dir(name), state, state / filename):
        try:
            mode = p.lstat().st_mode
        except FileNotFoundError:
            raise HiveError("not_found", f"agent {name} has no {filename} on this host") from None
        except OSError as exc:
            raise HiveError("unavailable", f"cannot read {filename} of {name}: {exc.strerror}") from None
        want = stat.S_ISREG if p.name == filename else stat.S_ISDIR
        if stat.S_ISLNK(mode) or not want(mode):
            metrics.FAILURES.labels("history_refused").inc()
            log.warning("history_refused", agent=name, path=str(p), reason="not a plain file or directory")
            raise HiveError("forbidden", f"{filename} of {name} is not a plain file: refused")
    return state / filename


def _open_ro(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=5.0, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def _query(layout: Layout, name: str, filename: str, sql: str, args: tuple[Any, ...]) -> list[sqlite3.Row]:
    path = _checked(layout, name, filename)
    try:
        conn = _open_ro(path)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        metrics.FAILURES.labels("history").inc()
        log.warning("history_read_failed", agent=name, db=filename, error=str(exc))
        raise HiveError("unavailable", f"cannot read {filename} of {name}: {exc}") from None


def read_events(layout: Layout, name: str, limit: int, before_id: int | None) -> list[LiveEvent]:
    """Newest first, like ctl.history; rows that do not decode are skipped (and counted)."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    if before_id is None:
        rows = _query(layout, name, "events.sqlite", "SELECT id, ts, kind, payload_json FROM events "
                      "ORDER BY id DESC LIMIT ?", (limit,))
    else:
        rows = _query(layout, name, "events.sqlite", "SELECT id, ts, kind, payload_json FROM events WHERE id < ? "
                      "ORDER BY id DESC LIMIT ?", (int(before_id), limit))
    out = []
    for r in rows:
        try:
            out.append(msgspec.convert({"id": r["id"], "ts": r["ts"], "kind": r["kind"],
                                        "payload": json.loads(r["payload_json"])}, LiveEvent))
        except (ValueError, msgspec.ValidationError):
            metrics.FAILURES.labels("history_row").inc()
    return out


def read_turns(layout: Layout, name: str, limit: int) -> list[TurnStats]:
    """The newest `limit` turn rows, oldest first."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    rows = _query(layout, name, "turn-stats.sqlite", "SELECT * FROM turn_stats ORDER BY id DESC LIMIT ?", (limit,))
    out = []
    for r in reversed(rows):
        d = {k: r[k] for k in r.keys() if k in TURN_FIELDS and r[k] is not None}
        if "model_costs_json" in r.keys():
            try:
                d["model_costs"] = json.loads(r["model_costs_json"] or "{}")
            except ValueError:
                pass
        d.setdefault("agent", name)
        try:
            out.append(msgspec.convert(d, TurnStats))
        except msgspec.ValidationError:
            metrics.FAILURES.labels("history_row").inc()
    return out
