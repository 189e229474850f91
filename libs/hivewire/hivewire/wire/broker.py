"""Broker payloads: messages, questions, reminders, approvals, operator views."""

from __future__ import annotations

from typing import Literal

import msgspec

from hivewire.wire.common import Wire

WakeReason = Literal["message", "reminder", "answer", "approval", "operator", "system"]
ApprovalKind = Literal["init_config", "apply_commit", "spawn"]
ApprovalStatus = Literal["pending", "approved", "denied", "failed", "deployed"]
Decision = Literal["approve", "deny"]
LooseEndKind = Literal["approval", "question", "reminder"]


class SendRequest(Wire, kw_only=True):
    to: str
    body: str
    id: str | None = None
    in_reply_to: str | None = None


class SendReply(Wire, kw_only=True):
    id: str
    sent_at: float
    recipients: list[str] = []


class RecvRequest(Wire, kw_only=True):
    max: int = 1
    wait_s: float = 0.0
    # The harness instance receiving (as in its presence): messages handed to an
    # instance are put back when a different instance announces itself.
    instance: str | None = None


class Message(Wire, kw_only=True):
    id: str
    sender: str = msgspec.field(name="from")
    to: str
    body: str
    sent_at: float
    in_reply_to: str | None = None
    redelivered: bool = False
    delivered_at: float | None = None
    acked_at: float | None = None
    # message | answer | expired | reminder | approval (what put it in the inbox)
    kind: str = "message"


class RecvReply(Wire, kw_only=True):
    messages: list[Message]


class AckRequest(Wire, kw_only=True):
    ids: list[str]


class AckReply(Wire, kw_only=True):
    acked: int


class AskRequest(Wire, kw_only=True):
    question: str
    options: list[str] = []
    multi: bool = False
    ttl_s: float | None = None
    to: str | None = None


class AskReply(Wire, kw_only=True):
    question_id: str
    deadline_at: float | None = None


class AnswerRequest(Wire, kw_only=True):
    question_id: str
    answer: str | list[str]


class AnswerReply(Wire, kw_only=True):
    question_id: str
    answered_at: float


class RemindRequest(Wire, kw_only=True):
    body: str
    at: float | None = None
    in_s: float | None = None
    file_path: str | None = None


class RemindReply(Wire, kw_only=True):
    reminder_id: str
    due_at: float


class ApproveRequest(Wire, kw_only=True):
    kind: ApprovalKind
    agent: str
    commit_ref: str | None = None
    note: str | None = None


class ApproveReply(Wire, kw_only=True):
    approval_id: str


class Approval(Wire, kw_only=True):
    approval_id: str
    agent: str
    kind: ApprovalKind
    requested_by: str
    commit_ref: str | None = None
    requested_at: float
    status: ApprovalStatus
    resolved_at: float | None = None
    note: str | None = None


class Question(Wire, kw_only=True):
    question_id: str
    asker: str
    to: str
    question: str
    options: list[str] = []
    multi: bool = False
    asked_at: float
    deadline_at: float | None = None
    answered_at: float | None = None
    answer: str | list[str] | None = None
    answered_by: str | None = None


class Reminder(Wire, kw_only=True):
    reminder_id: str
    agent: str
    body: str
    due_at: float
    file_path: str | None = None
    created_at: float
    fired_at: float | None = None


class LooseEndsRequest(Wire, kw_only=True):
    pass


class LooseEnds(Wire, kw_only=True):
    approvals: list[Approval] = []
    questions: list[Question] = []
    reminders: list[Reminder] = []


class CancelLooseEndRequest(Wire, kw_only=True):
    kind: LooseEndKind
    id: str


class CancelLooseEndReply(Wire, kw_only=True):
    kind: LooseEndKind
    id: str
    cancelled: bool = True


class CountsReply(Wire, kw_only=True):
    unread: int
    open_questions: int
    pending_reminders: int


# --- operator ---------------------------------------------------------------
class ApprovalsListRequest(Wire, kw_only=True):
    status: ApprovalStatus | Literal["all"] = "pending"
    limit: int = 100


class ApprovalsListReply(Wire, kw_only=True):
    approvals: list[Approval]


class ResolveRequest(Wire, kw_only=True):
    approval_id: str
    decision: Decision
    note: str | None = None


class QuestionsListRequest(Wire, kw_only=True):
    open_only: bool = True
    limit: int = 100


class QuestionsListReply(Wire, kw_only=True):
    questions: list[Question]


class OperatorAnswerRequest(Wire, kw_only=True):
    question_id: str
    answer: str | list[str]


class MessagesListRequest(Wire, kw_only=True):
    agent: str | None = None  # sent or received by this agent
    recipient: str | None = None  # only this inbox (e.g. "operator")
    since: float | None = None
    until: float | None = None
    unread: bool = False
    limit: int = 50
    before_id: str | None = None


class MessagesSearchRequest(Wire, kw_only=True):
    query: str
    agent: str | None = None
    limit: int = 50


class MessagesListReply(Wire, kw_only=True):
    messages: list[Message]
    # Pass as `before_id` to get the next (older) page; None on the last page.
    next_before_id: str | None = None


# --- registry (the deployer tells the broker which agents exist) ---------------
class RegistryRequest(Wire, kw_only=True):
    name: str


class RegistryReply(Wire, kw_only=True):
    agents: list[str]
    changed: bool = False


# --- published ----------------------------------------------------------------
class Wake(Wire, kw_only=True):
    reason: WakeReason
    ref: str = ""


class Changed(Wire, kw_only=True):
    table: str
    id: str
    op: Literal["insert", "update", "delete"]
