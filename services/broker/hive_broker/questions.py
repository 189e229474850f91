"""Questions to the operator or to a peer: ask, answer, expire, cancel.

A question to a peer also lands in the peer's inbox (kind `question`), so the
peer learns about it through its normal recv. An answer (or `[expired]` when
the deadline passes unanswered) lands in the asker's inbox (kind `answer` /
`expired`, `in_reply_to` = question id) and wakes it with reason `answer`:
the inbox makes the answer as durable as any message.
"""

from __future__ import annotations

import json
import math
import sqlite3

from hive_broker import known, messages
from hive_broker.effects import Effects, check_body, check_id, check_text
from hivewire.errors import HiveError
from hivewire.names import MANAGER, OPERATOR, validate_agent_name
from hivewire.wire.broker import AskReply, AskRequest, Question

TTL_CAP_S = 6 * 3600.0
MAX_OPTIONS = 32
EXPIRED = "[expired]"
CANCELLED = "[cancelled]"


def _decode_answer(text: str | None, multi: bool) -> str | list[str] | None:
    if text is not None and multi and text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            return text
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return text


def to_wire(row: sqlite3.Row) -> Question:
    multi = bool(row["multi"])
    try:
        options = json.loads(row["options_json"] or "[]")
    except ValueError:
        options = []
    return Question(
        question_id=str(row["id"]),
        asker=row["asker"],
        to=row["recipient"],
        question=row["question"],
        options=[str(o) for o in options] if isinstance(options, list) else [],
        multi=multi,
        asked_at=row["asked_at"],
        deadline_at=row["deadline_at"],
        answered_at=row["answered_at"],
        answer=_decode_answer(row["answer"], multi),
        answered_by=row["answered_by"],
    )


def ask(conn: sqlite3.Connection, eff: Effects, asker: str, req: AskRequest, now: float) -> AskReply:
    validate_agent_name(asker, allow_reserved=True)
    check_body(req.question, "question")
    if len(req.options) > MAX_OPTIONS:
        raise HiveError("too_large", f"at most {MAX_OPTIONS} options")
    for opt in req.options:
        check_text(opt, "option", 500)
    if req.multi and not req.options:
        raise HiveError("bad_request", "a multi-choice question needs options")
    to = OPERATOR if req.to is None else validate_agent_name(req.to, allow_reserved=True)
    if to == asker:
        raise HiveError("bad_request", "an agent cannot ask itself")
    if not known.is_known(conn, to):
        raise HiveError("unknown_recipient", f"no agent named {to!r}")
    ttl = TTL_CAP_S if req.ttl_s is None else req.ttl_s
    if not math.isfinite(ttl) or ttl <= 0:
        raise HiveError("bad_request", "ttl_s must be a positive number of seconds")
    deadline = now + min(ttl, TTL_CAP_S)
    cur = conn.execute(
        "INSERT INTO operator_questions(asker, recipient, question, options_json, multi, asked_at, deadline_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (asker, to, req.question, json.dumps(req.options), int(req.multi), now, deadline),
    )
    qid = str(cur.lastrowid)
    eff.change("operator_questions", qid, "insert")
    if to != OPERATOR:
        opts = f"\noptions{' (pick any)' if req.multi else ''}: " + " | ".join(req.options) if req.options else ""
        body = f"[question {qid} from {asker}] {req.question}{opts}\n(answer with answer(question_id={qid!r}, ...))"
        if len(body.encode()) > 64 * 1024:
            body = f"[question {qid} from {asker}] (long question; see loose ends) {req.question[:1000]}"
        messages.insert(conn, eff, sender=asker, recipient=to, body=body, now=now, kind="question", in_reply_to=None)
    return AskReply(question_id=qid, deadline_at=deadline)


def _get(conn: sqlite3.Connection, qid: str) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM operator_questions WHERE id = ?", (check_id(qid, "question id"),)).fetchone()
    if row is None:
        raise HiveError("not_found", f"no question {qid}")
    return row


def _close(
    conn: sqlite3.Connection, eff: Effects, row: sqlite3.Row, text: str, by: str, now: float, *, kind: str
) -> None:
    conn.execute(
        "UPDATE operator_questions SET answered_at = ?, answer = ?, answered_by = ? WHERE id = ?",
        (now, text, by, row["id"]),
    )
    qid = str(row["id"])
    eff.change("operator_questions", qid, "update")
    if kind == "cancelled":
        return
    shown = text
    if kind == "answer" and bool(row["multi"]) and text.startswith("["):
        decoded = _decode_answer(text, True)
        shown = ", ".join(decoded) if isinstance(decoded, list) else text
    body = shown if kind == "expired" else f"[answer to question {qid}] {shown}"
    sender = row["recipient"] if kind == "expired" or by == row["recipient"] else by
    messages.insert(
        conn, eff, sender=sender, recipient=row["asker"], body=body, now=now, in_reply_to=qid, kind=kind,
        wake_reason="answer", wake_ref=qid,
    )


def answer(
    conn: sqlite3.Connection, eff: Effects, answerer: str, qid: str, value: str | list[str], now: float,
    *, override: bool = False,
) -> float:
    """Answer question `qid`; only its addressee may, unless `override` (the operator)."""
    row = _get(conn, qid)
    if not override and row["recipient"] != answerer:
        raise HiveError("forbidden", f"question {qid} is addressed to {row['recipient']}, not {answerer}")
    if row["answered_at"] is not None:
        raise HiveError("conflict", f"question {qid} is already closed ({row['answer']})")
    if isinstance(value, list):
        if not row["multi"]:
            raise HiveError("bad_request", "a list answer needs a multi-choice question")
        if not value:
            raise HiveError("bad_request", "empty answer")
        for v in value:
            check_text(v, "answer choice", 4096)
        text = json.dumps(value)
    else:
        text = value
    check_body(text, "answer")
    _close(conn, eff, row, text, answerer, now, kind="answer")
    return now


def expire_due(conn: sqlite3.Connection, eff: Effects, now: float, limit: int = 200) -> int:
    rows = conn.execute(
        "SELECT * FROM operator_questions WHERE answered_at IS NULL AND deadline_at IS NOT NULL "
        "AND deadline_at <= ? ORDER BY deadline_at LIMIT ?",
        (now, limit),
    ).fetchall()
    for row in rows:
        _close(conn, eff, row, EXPIRED, "broker", now, kind="expired")
    if rows:
        eff.count("expired", len(rows))
    return len(rows)


def cancel(conn: sqlite3.Connection, eff: Effects, agent: str, qid: str, now: float) -> None:
    row = _get(conn, qid)
    if agent not in (row["asker"], MANAGER):
        raise HiveError("forbidden", f"question {qid} was asked by {row['asker']}")
    if row["answered_at"] is not None:
        raise HiveError("conflict", f"question {qid} is already closed")
    _close(conn, eff, row, CANCELLED, agent, now, kind="cancelled")


def list_questions(
    conn: sqlite3.Connection, *, open_only: bool, limit: int, agent: str | None = None
) -> list[Question]:
    if limit < 1:
        raise HiveError("bad_request", "limit must be at least 1")
    where, args = ["1 = 1"], []
    if open_only:
        where.append("answered_at IS NULL")
    if agent is not None:
        where.append("(asker = ? OR recipient = ?)")
        args += [agent, agent]
    rows = conn.execute(
        f"SELECT * FROM operator_questions WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
        (*args, min(limit, 500)),
    ).fetchall()
    return [to_wire(r) for r in rows]


def count_open(conn: sqlite3.Connection, asker: str | None = None) -> int:
    if asker is None:
        row = conn.execute("SELECT COUNT(*) FROM operator_questions WHERE answered_at IS NULL").fetchone()
    else:
        row = conn.execute(
            "SELECT COUNT(*) FROM operator_questions WHERE answered_at IS NULL AND asker = ?", (asker,)
        ).fetchone()
    return int(row[0])


def next_deadline(conn: sqlite3.Connection) -> float | None:
    row = conn.execute(
        "SELECT MIN(deadline_at) FROM operator_questions WHERE answered_at IS NULL AND deadline_at IS NOT NULL"
    ).fetchone()
    return None if row[0] is None else float(row[0])
