"""Reminders: schedule, fire when due, cancel.

Firing is one transaction: the reminder is marked fired *and* its message is
put in the agent's inbox together, so a crash either leaves both undone (the
next scheduler pass fires it) or both done (it never fires twice). The wake is
published after the commit; if the broker dies in between, the message still
sits in the inbox and start-up wakes every agent with pending messages.
"""

from __future__ import annotations

import sqlite3

from hive_broker import messages
from hive_broker.effects import Effects, check_body, check_id, check_text, check_time
from hivewire.errors import HiveError
from hivewire.names import MANAGER, validate_agent_name
from hivewire.wire.broker import Reminder, RemindReply, RemindRequest

MAX_AHEAD_S = 366 * 86400.0
BATCH = 100


def to_wire(row: sqlite3.Row) -> Reminder:
    return Reminder(
        reminder_id=str(row["id"]),
        agent=row["agent"],
        body=row["body"],
        due_at=row["due_at"],
        file_path=row["file_path"],
        created_at=row["created_at"],
        fired_at=row["fired_at"],
    )


def remind(conn: sqlite3.Connection, eff: Effects, agent: str, req: RemindRequest, now: float) -> RemindReply:
    validate_agent_name(agent, allow_reserved=True)
    check_body(req.body, "reminder body")
    if req.file_path is not None:
        check_text(req.file_path, "file_path", 4096)
    if (req.at is None) == (req.in_s is None):
        raise HiveError("bad_request", "give exactly one of `at` (unix seconds) or `in_s`")
    if req.in_s is not None:
        if check_time(req.in_s, "in_s") < 0:
            raise HiveError("bad_request", "in_s must not be negative")
        due = now + req.in_s
    else:
        assert req.at is not None
        due = max(check_time(req.at, "at"), now)
    if due - now > MAX_AHEAD_S:
        raise HiveError("bad_request", "a reminder can be at most a year ahead")
    cur = conn.execute(
        "INSERT INTO reminders(agent, body, file_path, created_at, due_at) VALUES (?, ?, ?, ?, ?)",
        (agent, req.body, req.file_path, now, due),
    )
    rid = str(cur.lastrowid)
    eff.change("reminders", rid, "insert")
    eff.count("reminder_scheduled")
    return RemindReply(reminder_id=rid, due_at=due)


def fire_due(conn: sqlite3.Connection, eff: Effects, now: float, limit: int = BATCH) -> int:
    """Fire at most `limit` due reminders (oldest first); returns how many fired."""
    rows = conn.execute(
        "SELECT * FROM reminders WHERE fired_at IS NULL AND cancelled_at IS NULL AND due_at <= ? "
        "ORDER BY due_at, id LIMIT ?",
        (now, limit),
    ).fetchall()
    for row in rows:
        cur = conn.execute(
            "UPDATE reminders SET fired_at = ? WHERE id = ? AND fired_at IS NULL AND cancelled_at IS NULL",
            (now, row["id"]),
        )
        if not cur.rowcount:
            continue
        rid = str(row["id"])
        body = f"[reminder {rid}] {row['body']}"
        if row["file_path"]:
            body += f"\n(file: {row['file_path']})"
        messages.insert(
            conn, eff, sender=row["agent"], recipient=row["agent"], body=body[: 64 * 1024], now=now,
            in_reply_to=rid, kind="reminder", wake_reason="reminder", wake_ref=rid,
        )
        eff.change("reminders", rid, "update")
        eff.count("reminder_fired")
    return len(rows)


def cancel(conn: sqlite3.Connection, eff: Effects, agent: str, rid: str, now: float) -> None:
    row = conn.execute("SELECT * FROM reminders WHERE id = ?", (check_id(rid, "reminder id"),)).fetchone()
    if row is None:
        raise HiveError("not_found", f"no reminder {rid}")
    if agent not in (row["agent"], MANAGER):
        raise HiveError("forbidden", f"reminder {rid} belongs to {row['agent']}")
    if row["fired_at"] is not None or row["cancelled_at"] is not None:
        raise HiveError("conflict", f"reminder {rid} already fired or was cancelled")
    conn.execute("UPDATE reminders SET cancelled_at = ? WHERE id = ?", (now, row["id"]))
    eff.change("reminders", rid, "update")


def pending(conn: sqlite3.Connection, agent: str | None) -> list[Reminder]:
    where, args = "fired_at IS NULL AND cancelled_at IS NULL", []
    if agent is not None:
        where += " AND agent = ?"
        args.append(agent)
    rows = conn.execute(f"SELECT * FROM reminders WHERE {where} ORDER BY due_at LIMIT 500", args).fetchall()
    return [to_wire(r) for r in rows]


def count_pending(conn: sqlite3.Connection, agent: str | None = None) -> int:
    if agent is None:
        row = conn.execute("SELECT COUNT(*) FROM reminders WHERE fired_at IS NULL AND cancelled_at IS NULL").fetchone()
    else:
        row = conn.execute(
            "SELECT COUNT(*) FROM reminders WHERE fired_at IS NULL AND cancelled_at IS NULL AND agent = ?", (agent,)
        ).fetchone()
    return int(row[0])


def next_due(conn: sqlite3.Connection) -> float | None:
    row = conn.execute("SELECT MIN(due_at) FROM reminders WHERE fired_at IS NULL AND cancelled_at IS NULL").fetchone()
    return None if row[0] is None else float(row[0])
