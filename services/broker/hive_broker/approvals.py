"""Approvals: an agent asks, the operator resolves, the deployer executes.

The broker stores and announces; executing approved deploys is the
deployer's. Resolution puts a message in the requester's inbox (kind
`approval`) and wakes it with reason `approval`.
"""

from __future__ import annotations

import re
import sqlite3

from hive_broker import messages
from hive_broker.effects import Effects, check_id, check_text
from hivewire.errors import HiveError
from hivewire.names import MANAGER, OPERATOR, validate_agent_name
from hivewire.wire.broker import Approval, ApproveReply, ApproveRequest

SHA_RE = re.compile(r"^[0-9a-f]{7,40}$")
STATUSES = ("pending", "approved", "denied", "failed", "deployed")


def to_wire(row: sqlite3.Row) -> Approval:
    return Approval(
        approval_id=str(row["id"]),
        agent=row["agent"],
        kind=row["kind"],
        requested_by=row["requested_by"] or row["agent"],
        commit_ref=row["commit_ref"],
        requested_at=row["requested_at"],
        status=row["status"],
        resolved_at=row["resolved_at"],
        note=row["note"],
    )


def request(conn: sqlite3.Connection, eff: Effects, requester: str, req: ApproveRequest, now: float) -> ApproveReply:
    validate_agent_name(requester, allow_reserved=True)
    target = validate_agent_name(req.agent)
    if target != requester and requester != MANAGER:
        raise HiveError("forbidden", f"only {MANAGER} may request approvals for another agent")
    ref = None
    if req.commit_ref is not None:
        ref = req.commit_ref.lower()
        if not SHA_RE.fullmatch(ref):
            raise HiveError("bad_request", "commit_ref must be a 7-40 character hex sha")
    elif req.kind == "apply_commit":
        raise HiveError("bad_request", "apply_commit needs a commit_ref")
    if req.note is not None:
        check_text(req.note, "note", allow_empty=True)
    row = conn.execute(
        "SELECT id FROM approvals WHERE status = 'pending' AND agent = ? AND kind = ? AND commit_ref IS ?",
        (target, req.kind, ref),
    ).fetchone()
    if row is not None:  # the same request is already waiting: one entry for the operator
        return ApproveReply(approval_id=str(row["id"]))
    cur = conn.execute(
        "INSERT INTO approvals(agent, kind, commit_ref, requested_at, status, note, requested_by) "
        "VALUES (?, ?, ?, ?, 'pending', ?, ?)",
        (target, req.kind, ref, now, req.note, requester),
    )
    aid = str(cur.lastrowid)
    eff.change("approvals", aid, "insert")
    return ApproveReply(approval_id=aid)


def _get(conn: sqlite3.Connection, aid: str) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM approvals WHERE id = ?", (check_id(aid, "approval id"),)).fetchone()
    if row is None:
        raise HiveError("not_found", f"no approval {aid}")
    return row


def resolve(
    conn: sqlite3.Connection, eff: Effects, aid: str, decision: str, note: str | None, now: float
) -> Approval:
    row = _get(conn, aid)
    if row["status"] != "pending":
        raise HiveError("conflict", f"approval {aid} is already {row['status']}")
    if note is not None:
        check_text(note, "note", allow_empty=True)
    status = "approved" if decision == "approve" else "denied"
    conn.execute(
        "UPDATE approvals SET status = ?, resolved_at = ?, note = COALESCE(?, note) WHERE id = ?",
        (status, now, note, row["id"]),
    )
    eff.change("approvals", aid, "update")
    requester = row["requested_by"] or row["agent"]
    what = f"{row['kind']} for {row['agent']}" + (f" @ {row['commit_ref']}" if row["commit_ref"] else "")
    body = f"[approval {aid}] {what}: {status}" + (f" ({note})" if note else "")
    messages.insert(
        conn, eff, sender=OPERATOR, recipient=requester, body=body, now=now, in_reply_to=aid, kind="approval",
        wake_reason="approval", wake_ref=aid,
    )
    return to_wire(_get(conn, aid))


def cancel(conn: sqlite3.Connection, eff: Effects, agent: str, aid: str, now: float) -> None:
    row = _get(conn, aid)
    if agent not in ((row["requested_by"] or row["agent"]), MANAGER):
        raise HiveError("forbidden", f"approval {aid} was requested by {row['requested_by'] or row['agent']}")
    if row["status"] != "pending":
        raise HiveError("conflict", f"approval {aid} is already {row['status']}")
    conn.execute(
        "UPDATE approvals SET status = 'denied', resolved_at = ?, note = ? WHERE id = ?",
        (now, f"cancelled by {agent}", row["id"]),
    )
    eff.change("approvals", aid, "update")


def list_approvals(conn: sqlite3.Connection, status: str, limit: int) -> list[Approval]:
    if limit < 1:
        raise HiveError("bad_request", "limit must be at least 1")
    if status == "all":
        rows = conn.execute("SELECT * FROM approvals ORDER BY id DESC LIMIT ?", (min(limit, 500),)).fetchall()
    else:
        rows = conn.execute(
            "SELECT * FROM approvals WHERE status = ? ORDER BY id DESC LIMIT ?", (status, min(limit, 500))
        ).fetchall()
    return [to_wire(r) for r in rows]


def pending_for(conn: sqlite3.Connection, agent: str | None) -> list[Approval]:
    if agent is None:
        rows = conn.execute("SELECT * FROM approvals WHERE status = 'pending' ORDER BY id").fetchall()
    else:
        rows = conn.execute(
            "SELECT * FROM approvals WHERE status = 'pending' AND (requested_by = ? OR agent = ?) ORDER BY id",
            (agent, agent),
        ).fetchall()
    return [to_wire(r) for r in rows]


def count_pending(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM approvals WHERE status = 'pending'").fetchone()[0])


def fail_pending_for(conn: sqlite3.Connection, eff: Effects, agent: str, reason: str, now: float) -> list[str]:
    """The agent is gone (destroyed): every approval still pending for it fails.

    The requester (when it is not the agent itself) gets a `kind: "approval"` message and a wake,
    as for a resolution. Returns the failed approval ids.
    """
    rows = conn.execute("SELECT * FROM approvals WHERE status = 'pending' AND agent = ? ORDER BY id",
                        (agent,)).fetchall()
    for row in rows:
        aid = str(row["id"])
        note = f"{row['note']}; {reason}" if row["note"] else reason
        conn.execute("UPDATE approvals SET status = 'failed', resolved_at = ?, note = ? WHERE id = ?",
                     (now, note[:4096], row["id"]))
        eff.change("approvals", aid, "update")
        requester = row["requested_by"] or row["agent"]
        if requester != agent:
            what = f"{row['kind']} for {agent}" + (f" @ {row['commit_ref']}" if row["commit_ref"] else "")
            messages.insert(
                conn, eff, sender=OPERATOR, recipient=requester, body=f"[approval {aid}] {what}: failed ({reason})",
                now=now, in_reply_to=aid, kind="approval", wake_reason="approval", wake_ref=aid,
            )
    return [str(r["id"]) for r in rows]


def record_outcome(
    conn: sqlite3.Connection, eff: Effects, aid: str, outcome: str, error: str | None, now: float
) -> bool:
    """The deployer finished an approval (`hive.deployer.deploy.<agent>`): deployed | failed | denied.

    Final states are kept; returns True when the status changed. The deployer tells
    the requester itself, so no inbox message here, only `hive.broker.changed`.
    """
    if outcome not in ("deployed", "failed", "denied"):
        raise HiveError("bad_request", f"unknown deploy outcome {outcome!r}")
    row = _get(conn, aid)
    if row["status"] in ("deployed", "failed", "denied"):
        return False
    note = row["note"]
    if error:
        note = f"{note}; {error}" if note else error
    conn.execute(
        "UPDATE approvals SET status = ?, resolved_at = COALESCE(resolved_at, ?), note = ? WHERE id = ?",
        (outcome, now, note[:4096] if note else None, row["id"]),
    )
    eff.change("approvals", aid, "update")
    return True
