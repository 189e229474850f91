"""Bodies and views of the JSON API (msgspec structs, so /schema describes them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from hive_dashboard.hub import PresenceView
from hivewire.wire.agent import LiveEvent, TurnStats
from hivewire.wire.backup import BackupDone, Snapshot
from hivewire.wire.broker import Approval, Message, Question
from hivewire.wire.deployer import AgentInfo

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=100_000)]
Note = Annotated[str, msgspec.Meta(max_length=10_000)]
ModelName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\[\]-]*$")]
class Body(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class ResolveBody(Body, kw_only=True):
    decision: Literal["approve", "deny"]
    note: Note | None = None
    # approving a deploy whose diff the view could not show in full (ApprovalView.confirm_required)
    confirm_large: bool = False


class AnswerBody(Body, kw_only=True):
    answer: Text | Annotated[list[Annotated[str, msgspec.Meta(max_length=10_000)]], msgspec.Meta(min_length=1)]


class SendBody(Body, kw_only=True):
    to: Annotated[str, msgspec.Meta(pattern=r"^([a-z][a-z0-9-]{0,30}|\*)$")]
    body: Text
    in_reply_to: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class PromptBody(Body, kw_only=True):
    text: Text


class ModelBody(Body, kw_only=True):
    model: ModelName


class LoginBody(Body, kw_only=True):
    action: Literal["start", "submit", "cancel"]
    code: Annotated[str, msgspec.Meta(max_length=4096)] | None = None


class SpawnBody(Body, kw_only=True):
    # checked by the handler (validate_agent_name), whose error states the naming rule in words
    name: Annotated[str, msgspec.Meta(max_length=64)]


class BackupRunBody(Body, kw_only=True):
    classes: list[Annotated[str, msgspec.Meta(max_length=64)]] = []


class ActionResult(msgspec.Struct, kw_only=True):
    ok: bool = True
    kind: str
    result: dict[str, Any] = {}


class PlanWindow(msgspec.Struct, kw_only=True):
    """One usage-limit window of the agent's plan, as its CLI last reported it (AgentState.plan)."""

    utilization: float | None = None  # 0..1 (1: used up)
    resets_at: float | None = None  # unix s
    status: str | None = None  # allowed | allowed_warning (near its limit) | rejected (parked on it)


class AgentView(msgspec.Struct, kw_only=True):
    name: str
    label: str
    presence: PresenceView | None = None
    run_state: str | None = None
    transient: str | None = None
    status: str | None = None
    turn_state: str | None = None
    model: str | None = None
    ctx: int | None = None
    cost: int | None = None
    context_window: int | None = None
    unread: int = 0
    last_turn: TurnStats | None = None
    state_bytes: int = 0
    login_url: str | None = None
    confined: bool = True  # False: its CLI runs unconfined (the deployer's `process` runtime)
    rate_limited_until: float | None = None  # unix s: parked on a usage limit, no model request before it
    plan: dict[str, PlanWindow] = {}  # {window: ...}, e.g. five_hour, seven_day
    host: str | None = None  # the host that runs it (issue 26; the core host's name for local agents)
    host_lost: bool = False  # that host stopped reporting: the agent is dead until it is back


class ApprovalView(msgspec.Struct, kw_only=True):
    approval: Approval
    diff: str | None = None  # apply_commit: commits + full diff from the deployed commit (cut at 64 KiB)
    diff_base: str | None = None  # the deployed sha the diff starts from (None: the empty tree)
    diff_bytes: int = 0
    diff_truncated: bool = False
    diff_error: str | None = None
    confirm_required: bool = False  # approve only with confirm_large=true


class StorageView(msgspec.Struct, kw_only=True):
    per_agent: dict[str, int] = {}
    broker_bytes: int = 0
    backups_bytes: int = 0
    total_bytes: int = 0


class BackupView(msgspec.Struct, kw_only=True):
    snapshots: list[Snapshot] = []
    last_done: BackupDone | None = None


class Overview(msgspec.Struct, kw_only=True):
    now: float
    agents: list[AgentView] = []
    tombstones: list[AgentInfo] = []
    approvals: list[ApprovalView] = []
    questions: list[Question] = []
    inbox: list[Message] = []
    messages: list[Message] = []
    backups: BackupView = msgspec.field(default_factory=BackupView)
    storage: StorageView = msgspec.field(default_factory=StorageView)
    errors: dict[str, str] = {}


class HistoryView(msgspec.Struct, kw_only=True):
    agent: str
    events: list[LiveEvent]
    # "harness": ctl.history; "files": its harness did not answer, so the deployer read its events.sqlite
    source: str = "harness"


class StatsSummary(msgspec.Struct, kw_only=True):
    turns: int = 0
    ok: int = 0
    failed: int = 0
    total_duration_ms: int = 0
    mean_duration_ms: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    tool_calls: int = 0
    last_ctx: int | None = None
    context_window: int = 0


class StatsView(msgspec.Struct, kw_only=True):
    agent: str
    source: str = "live"  # "live": turns seen on hive.agent.<a>.turns; "files": the deployer read turn-stats.sqlite
    summary: StatsSummary
    turns: list[TurnStats]
    chart_svg: str
