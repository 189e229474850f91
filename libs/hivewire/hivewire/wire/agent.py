"""Harness payloads: LiveEvents, presence, turn stats, and operator controls."""

from __future__ import annotations

from typing import Any, Literal

from hivewire.wire.common import Wire

# stalled: a turn without progress for HIVE_STALL_S (reason no_progress; docs/harness.md "Liveness")
PresenceState = Literal["idle", "thinking", "compacting", "waiting", "offline", "stalled"]
TurnState = Literal["idle", "thinking", "compacting", "stalled"]
# over_budget / runaway: parked by hive_harness.budget (docs/costs.md)
AgentStatus = Literal["online", "needs_login", "rate_limited", "offline", "over_budget", "runaway"]
ResultKind = Literal["ok", "failed", "prompt_too_long", "rate_limited", "cancelled"]
EventKind = Literal[
    "turn_start",
    "turn_end",
    "assistant_text",
    "thinking",
    "tool_use",
    "tool_result",
    "note",
    "status_changed",
    "model_changed",
    "token_usage_changed",
    "turn_state_changed",
    "error",
]


class LiveEvent(Wire, kw_only=True):
    id: int
    ts: float
    kind: EventKind
    payload: dict[str, Any] = {}


class Typing(Wire, kw_only=True):
    """Partial assistant text on `hive.agent.<a>.typing`, coalesced (at most ~20 a second).

    Not stored and not a LiveEvent: the block's final text arrives as an ordinary
    `assistant_text` event, which replaces it. `text` is what streamed since the previous
    publication for `block`, starting at character `offset` of the block's text; a
    receiver whose own copy is shorter than `offset` missed some (a late subscriber)."""

    block: str  # "<api message id>:<content block index>"
    offset: int = 0
    text: str
    instance: str = ""
    ts: float = 0.0


class Presence(Wire, kw_only=True):
    state: PresenceState
    since: float
    instance: str
    reason: str | None = None
    ts: float = 0.0
    until: float | None = None  # waiting/rate_limit: when the park ends (unix s)


class TurnStats(Wire, kw_only=True):
    agent: str
    model: str
    wake_from: str
    result_kind: ResultKind
    started_at: float
    ended_at: float
    duration_ms: int
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    last_input_tokens: int = 0
    last_output_tokens: int = 0
    last_cache_read_input_tokens: int = 0
    last_cache_creation_input_tokens: int = 0
    context_window: int = 0
    tool_call_count: int = 0
    tool_calls_json: str = "{}"
    open_threads_count: int = 0
    open_reminders_count: int = 0
    note: str | None = None
    cost_usd: float = 0.0  # the CLI's result.total_cost_usd
    model_costs: dict[str, float] = {}  # result.modelUsage.<model>.costUSD
    turn_id: str = ""  # unique per turn: the ledger's dedupe key (and the JetStream Nats-Msg-Id)
    session: str = ""  # set on a session's row (then `agent` is empty)


class AgentState(Wire, kw_only=True):
    status: AgentStatus
    turn_state: TurnState
    turn_state_since: float
    model: str
    ctx_tokens: int | None = None
    cost_tokens: int | None = None
    cost_usd: float | None = None  # the last turn's dollars (cost_tokens is its billed tokens)
    context_window: int
    rate_limited: bool = False
    unread: int = 0
    login_url: str | None = None
    login_reason: str | None = None  # needs_login: no_credentials | token_expired | auth_failed
    login_error: str | None = None  # a dashboard login's last error (e.g. a wrong code)
    rate_limited_until: float | None = None  # unix s; no model request before it
    plan: dict[str, dict[str, Any]] = {}  # {window: {utilization, resets_at, status}} from the CLI's latest
    tools_missing: list[str] = []  # hive tools the CLI's init event lacked (the turn fails loudly)


class HistoryRequest(Wire, kw_only=True):
    limit: int = 200
    before_id: int | None = None


class HistoryReply(Wire, kw_only=True):
    events: list[LiveEvent]


class ModelRequest(Wire, kw_only=True):
    model: str


class PromptRequest(Wire, kw_only=True):
    text: str


class LoginRequest(Wire, kw_only=True):
    action: Literal["start", "submit", "cancel"]
    code: str | None = None
