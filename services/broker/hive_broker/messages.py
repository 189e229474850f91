"""Inboxes: send, recv (mark in flight), ack, redelivery, operator views, counts.

Pure functions over a sqlite connection. Writers take an `Effects` and run
inside one `Database.write` job; the service publishes after commit.

A message is *pending* (delivered_at NULL), *in flight* (delivered_at set,
acked_at NULL) or *done* (acked_at set). Redelivery puts an in-flight message
back to pending and bumps redelivery_count, so the next recv reports
`redelivered: true`.
"""

from __future__ import annotations

import sqlite3

from hive_broker.dedup import ClientIds
from hive_broker.effects import Effects, check_body, check_client_id, check_id, check_time
from hive_broker.known import Roster, current_instance, known_agents, known_among
from hivewire.errors import HiveError
from hivewire.names import BROADCAST, validate_agent_name
from hivewire.wire.broker import (
    Message,
    MessagesListReply,
    MessagesListRequest,
    MessagesSearchRequest,
    SendReply,
    SendRequest,
)

MAX_RECV = 32
MAX_ACK_IDS = 1024
MAX_LIST = 500

COLS = "id, sender, recipient, body, sent_at, in_reply_to, redelivery_count, delivered_at, acked_at, kind"


def to_wire(row: sqlite3.Row) -> Message:
    return Message(
        id=str(row["id"]),
        sender=row["sender"],
        to=row["recipient"],
        body=row["body"],
        sent_at=row["sent_at"],
        in_reply_to=row["in_reply_to"],
        redelivered=bool(row["redelivery_count"]),
        delivered_at=row["delivered_at"],
        acked_at=row["acked_at"],
        kind=row["kind"] or "message",
    )


def insert(
    conn: sqlite3.Connection,
    eff: Effects,
    *,
    sender: str,
    recipient: str,
    body: str,
    now: float,
    in_reply_to: str | None = None,
    client_id: str | None = None,
    kind: str = "message",
    wake_reason: str = "message",
    wake_ref: str | None = None,
) -> int:
    """Store one message for one recipient and record its wake."""
    cur = conn.execute(
        "INSERT INTO messages(sender, recipient, body, sent_at, in_reply_to, client_id, kind) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (sender, recipient, body, now, in_reply_to, client_id, kind),
    )
    mid = int(cur.lastrowid or 0)
    eff.wake(recipient, wake_reason, wake_ref if wake_ref is not None else str(mid))
    eff.change("messages", mid, "insert")
    eff.pollers.add(recipient)
    eff.count("sent")
    return mid


def send(
    conn: sqlite3.Connection, eff: Effects, client_ids: ClientIds, sender: str, req: SendRequest, now: float,
    known: set[str] | None = None,
) -> SendReply:
    """Store one send. Every HiveError is raised before the first write (send_many relies on it).
    `known`: the known agents among the recipients, when the caller looked them up already."""
    validate_agent_name(sender, allow_reserved=True)
    check_body(req.body)
    if req.to != BROADCAST:
        validate_agent_name(req.to, allow_reserved=True)
    client_id = check_client_id(req.id) if req.id is not None else None
    if req.in_reply_to is not None and not (0 < len(req.in_reply_to) <= 128):
        raise HiveError("bad_request", "in_reply_to must be 1-128 characters")

    if client_id is not None:
        rows = client_ids.lookup(conn, sender, client_id, now)
        if rows:
            if rows[0]["body"] != req.body or (req.to != BROADCAST and rows[0]["recipient"] != req.to):
                raise HiveError("conflict", f"client id {client_id!r} was already used for a different message")
            eff.count("duplicate")
            return SendReply(id=str(rows[0]["id"]), sent_at=rows[0]["sent_at"], recipients=[r[1] for r in rows])

    if req.to == BROADCAST:
        recipients = [a for a in known_agents(conn) if a != sender]
        if not recipients:
            raise HiveError("unknown_recipient", "broadcast reaches nobody: no other agent is known")
    else:
        if known is None:
            known = known_among(conn, {req.to})
        if req.to not in known:
            raise HiveError("unknown_recipient", f"no agent named {req.to!r} (the deployer has not created it)")
        recipients = [req.to]

    ids = [
        insert(conn, eff, sender=sender, recipient=r, body=req.body, now=now, in_reply_to=req.in_reply_to,
               client_id=client_id)
        for r in recipients
    ]
    if client_id is not None:
        client_ids.remember(sender, client_id, ids[0], len(ids), now)
    return SendReply(id=str(ids[0]), sent_at=now, recipients=recipients)


def send_many(
    conn: sqlite3.Connection, eff: Effects, client_ids: ClientIds, items: list[tuple[str, SendRequest]], now: float,
    roster: Roster | None = None,
) -> list[SendReply | Exception]:
    """Several (sender, request) sends inside the caller's transaction. `send` raises
    every refusal before its first write, so a refused send changed nothing and
    recorded no effects: its HiveError takes its place in the result and the others
    go on (no savepoint per send: two statements each, on the hottest path). A
    storage error is not a refusal: it fails the whole job, like a failed commit.
    `roster`: the service's in-memory known agents, else they are looked up here."""
    out: list[SendReply | Exception] = []
    # sends change no agent's registration, so one lookup holds for the whole batch
    wanted = {req.to for _, req in items if req.to != BROADCAST}
    known = roster.known_among(wanted) if roster is not None else known_among(conn, wanted)
    for sender, req in items:
        try:
            out.append(send(conn, eff, client_ids, sender, req, now, known))
        except HiveError as err:
            out.append(err)
    return out


def recv(
    conn: sqlite3.Connection, eff: Effects, agent: str, limit: int, instance: str | None, now: float,
    from_id: int = 0,
) -> list[Message]:
    """Hand out up to `limit` pending messages, oldest first, marking them in flight.
    `from_id`: the caller knows the agent has no pending message below this id."""
    rows = conn.execute(
        f"SELECT {COLS} FROM messages WHERE recipient = ? AND acked_at IS NULL AND delivered_at IS NULL "
        "AND id >= ? ORDER BY id LIMIT ?",
        (agent, from_id, limit),
    ).fetchall()
    if not rows:
        return []
    if instance is None:
        instance = current_instance(conn, agent)
    ids = [r["id"] for r in rows]
    conn.execute(
        f"UPDATE messages SET delivered_at = ?, delivered_instance = ? WHERE id IN ({','.join('?' * len(ids))})",
        (now, instance, *ids),
    )
    out = []
    for r in rows:
        m = to_wire(r)
        m.delivered_at = now
        out.append(m)
        eff.change("messages", r["id"], "update")
    eff.count("delivered", len(rows))
    return out


def ack(conn: sqlite3.Connection, eff: Effects, agent: str, ids: list[str], now: float) -> int:
    if len(ids) > MAX_ACK_IDS:
        raise HiveError("too_large", f"at most {MAX_ACK_IDS} ids per ack")
    nums = sorted({check_id(i, "message id") for i in ids})
    if not nums:
        return 0
    rows = conn.execute(
        f"UPDATE messages SET acked_at = ?, delivered_at = COALESCE(delivered_at, ?) "
        f"WHERE recipient = ? AND acked_at IS NULL AND id IN ({','.join('?' * len(nums))}) RETURNING id",
        (now, now, agent, *nums),
    ).fetchall()
    for r in rows:
        eff.change("messages", r[0], "update")
    eff.count("acked", len(rows))
    return len(rows)


def _put_back(conn: sqlite3.Connection, eff: Effects, where: str, args: tuple[object, ...], cause: str) -> int:
    rows = conn.execute(
        "UPDATE messages SET delivered_at = NULL, delivered_instance = NULL, "
        f"redelivery_count = redelivery_count + 1 WHERE acked_at IS NULL AND delivered_at IS NOT NULL AND {where} "
        "RETURNING id, recipient",
        args,
    ).fetchall()
    for r in rows:
        eff.change("messages", r["id"], "update")
        eff.wake(r["recipient"], "message", str(r["id"]))
        eff.pollers.add(r["recipient"])
        eff.put_back.add(r["recipient"])
    if rows:
        eff.count(f"redelivered:{cause}", len(rows))
    return len(rows)


def redeliver_for_new_instance(conn: sqlite3.Connection, eff: Effects, agent: str, instance: str) -> int:
    """The agent's harness restarted: what the old instance held comes back."""
    return _put_back(
        conn, eff, "recipient = ? AND (delivered_instance IS NULL OR delivered_instance != ?)", (agent, instance),
        "restart",
    )


def reclaim_lost_reply(conn: sqlite3.Connection, eff: Effects, agent: str, instance: str) -> int:
    """The instance says it holds none of its in-flight messages (a recv reply it never got): put back."""
    return _put_back(conn, eff, "recipient = ? AND delivered_instance = ?", (agent, instance), "lost_reply")


def redeliver_stale(conn: sqlite3.Connection, eff: Effects, older_than: float, limit: int = 500) -> int:
    """In flight since before `older_than` and never acked: put back."""
    return _put_back(
        conn, eff,
        # spelled so the planner uses the small messages_inflight index, not a scan of all history
        "id IN (SELECT id FROM messages WHERE acked_at IS NULL AND delivered_at IS NOT NULL AND delivered_at < ? "
        "ORDER BY delivered_at LIMIT ?)",
        (older_than, limit), "timeout",
    )


def agents_with_pending(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT DISTINCT recipient FROM messages WHERE acked_at IS NULL AND delivered_at IS NULL"
    ).fetchall()
    return [r[0] for r in rows]


def counts_unread(conn: sqlite3.Connection, agent: str) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM messages WHERE recipient = ? AND acked_at IS NULL AND delivered_at IS NULL", (agent,)
    ).fetchone()
    return int(row[0])


def inbox_depths(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute(
        "SELECT recipient, COUNT(*) FROM messages WHERE acked_at IS NULL GROUP BY recipient"
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def _limit(n: int) -> int:
    if n < 1:
        raise HiveError("bad_request", "limit must be at least 1")
    return min(n, MAX_LIST)


def list_messages(conn: sqlite3.Connection, req: MessagesListRequest) -> MessagesListReply:
    """Operator view, newest first: filter by agent (either side), time, unread."""
    where, args = ["1 = 1"], []
    if req.agent is not None:
        validate_agent_name(req.agent, allow_reserved=True)
        where.append("(recipient = ? OR sender = ?)")
        args += [req.agent, req.agent]
    if req.recipient is not None:
        where.append("recipient = ?")
        args.append(validate_agent_name(req.recipient, allow_reserved=True))
    if req.since is not None:
        where.append("sent_at >= ?")
        args.append(check_time(req.since, "since"))
    if req.until is not None:
        where.append("sent_at < ?")
        args.append(check_time(req.until, "until"))
    if req.unread:
        where.append("acked_at IS NULL")
    if req.before_id is not None:
        where.append("id < ?")
        args.append(check_id(req.before_id, "before_id"))
    limit = _limit(req.limit)
    rows = conn.execute(
        f"SELECT {COLS} FROM messages WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?", (*args, limit + 1)
    ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return MessagesListReply(
        messages=[to_wire(r) for r in rows], next_before_id=str(rows[-1]["id"]) if more and rows else None
    )


def _fts_query(query: str) -> str:
    """Every word as a quoted FTS5 string: user text can never be a syntax error."""
    return " ".join('"' + w.replace('"', '""') + '"' for w in query.split())


def check_search(req: MessagesSearchRequest) -> None:
    if not req.query.strip() or len(req.query) > 1000:
        raise HiveError("bad_request", "query must be 1-1000 characters")
    _limit(req.limit)
    if req.agent is not None:
        validate_agent_name(req.agent, allow_reserved=True)


def search(conn: sqlite3.Connection, req: MessagesSearchRequest) -> MessagesListReply:
    """Over indexed bodies only: callers index first. `conn` is one of the search index's
    connections (search_index.SearchIndex), with broker.sqlite attached as `b`."""
    check_search(req)
    limit = _limit(req.limit)
    where, args = "messages_fts MATCH ?", [_fts_query(req.query)]
    if req.agent is not None:
        where += " AND (m.recipient = ? OR m.sender = ?)"
        args += [req.agent, req.agent]
    cols = ", ".join(f"m.{c.strip()}" for c in COLS.split(","))
    rows = conn.execute(
        f"SELECT {cols} FROM messages_fts JOIN b.messages m ON m.id = messages_fts.rowid "
        f"WHERE {where} ORDER BY rank LIMIT ?",
        (*args, limit),
    ).fetchall()
    return MessagesListReply(messages=[to_wire(r) for r in rows])

