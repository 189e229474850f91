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
    # The caller holds nothing of what is in flight to `instance`: its previous recv's reply
    # was lost (a timeout, a partition), so those messages come back first (redelivered).
    reclaim: bool = False


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


# --- cost ledger and budgets (hive_broker.ledger; docs/costs.md) ---------------
CostGroup = Literal["agent", "model", "day", "session"]
BudgetPeriod = Literal["day", "week", "month"]


class CostsRequest(Wire, kw_only=True):
    by: CostGroup = "agent"
    since: float | None = None  # unix seconds; None = everything
    until: float | None = None
    agent: str | None = None  # only this agent's turns
    then: CostGroup | None = None  # a second grouping (rows carry key2), e.g. by day then model


class CostRow(Wire, kw_only=True):
    key: str  # the agent, model, UTC day (YYYY-MM-DD) or session id; '' = not an agent's / a session's
    key2: str = ""  # the `then` grouping's key
    cost_usd: float
    tokens: int
    turns: int


class CostsReply(Wire, kw_only=True):
    by: CostGroup
    since: float | None = None
    rows: list[CostRow] = []
    total_usd: float = 0.0
    total_tokens: int = 0
    turns: int = 0


class Budget(Wire, kw_only=True):
    agent: str | None = None  # None: the swarm budget
    usd: float | None = None
    tokens: int | None = None
    per: BudgetPeriod = "day"
    include_manager: bool = False  # swarm budget only: does it park manager too
    updated_at: float = 0.0


class BudgetSetRequest(Wire, kw_only=True):
    agent: str | None = None
    swarm: bool = False
    usd: float | None = None
    tokens: int | None = None
    per: BudgetPeriod = "day"
    include_manager: bool = False


class BudgetClearRequest(Wire, kw_only=True):
    agent: str | None = None
    swarm: bool = False


class BudgetStatus(Wire, kw_only=True):
    budget: Budget
    period_start: float
    period_end: float
    spent_usd: float  # in the budget's scope (the agent, or the swarm) this period
    spent_tokens: int
    fraction: float  # of the budget used (the larger of dollars and tokens)
    over: bool
    agent_spent_usd: float = 0.0  # spend: the asking agent's own part of spent_*
    agent_spent_tokens: int = 0


class BudgetShowReply(Wire, kw_only=True):
    budgets: list[BudgetStatus] = []


class SpendReply(Wire, kw_only=True):
    """`hive.broker.<agent>.spend`: the budgets that apply to the agent, with this period's spend."""

    agent: str
    budgets: list[BudgetStatus] = []
