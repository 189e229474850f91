"""Deployer payloads: agent lifecycle and the session API for external systems."""

from __future__ import annotations

from typing import Any, Literal

from hivewire.wire.agent import TurnStats
from hivewire.wire.common import Wire

AgentRunState = Literal["running", "stopped", "crashed", "destroyed"]
Transient = Literal[
    "spawning", "starting", "stopping", "restarting", "rebuilding", "killing", "deploying",
    "destroying", "reviving", "purging", "importing", "moving",
]
Priority = Literal["high", "medium", "low"]
SessionStatus = Literal["created", "starting", "running", "completed", "failed", "not_found"]


class NameRequest(Wire, kw_only=True):
    name: str


class DestroyRequest(Wire, kw_only=True):
    name: str
    purge: bool = False


class AgentInfo(Wire, kw_only=True):
    name: str
    state: AgentRunState
    transient: Transient | None = None
    runtime: str = "process"
    pid: int | None = None
    since: float = 0.0
    state_bytes: int = 0
    has_credentials: bool = False
    restarts: int = 0
    crashes: int = 0
    last_error: str | None = None
    created_at: float = 0.0
    destroyed_at: float | None = None
    deployed: str | None = None
    deployed_sha: str | None = None
    purged: bool = False
    confined: bool = True  # False: the agent CLI runs unconfined (the `process` runtime)
    host: str | None = None  # the host it runs on (issue 26; None: a deployer without hosts)
    host_lost: bool = False  # its host stopped heartbeating: shown `dead (host lost)`


class SpawnRequest(Wire, kw_only=True):
    name: str
    runtime: str | None = None
    host: str | None = None  # issue 26: None = the host with the most free capacity


class DeployRequest(Wire, kw_only=True):
    """Operator-direct or approval-driven steps of the deploy flow (`id` = approval id)."""

    name: str
    id: str
    commit_ref: str | None = None
    note: str | None = None


class DeployReply(Wire, kw_only=True):
    name: str
    id: str
    outcome: Literal["proposed", "deployed", "failed", "denied"]
    sha: str | None = None
    tags: list[str] = []
    error: str | None = None
    note: str | None = None


class DeployEvent(Wire, kw_only=True):
    """Published on `hive.deployer.deploy.<agent>` when a deploy ends (the broker resolves the approval)."""

    agent: str
    id: str
    approval_id: str | None = None
    outcome: Literal["deployed", "failed", "denied"]
    sha: str | None = None
    error: str | None = None
    ts: float = 0.0


class ExportRequest(Wire, kw_only=True):
    name: str
    path: str
    include_creds: bool = False


class ImportRequest(Wire, kw_only=True):
    path: str
    name: str | None = None
    force: bool = False


class ArchiveReply(Wire, kw_only=True):
    name: str
    path: str
    bytes: int = 0


class AgentList(Wire, kw_only=True):
    agents: list[AgentInfo]


class SessionCreate(Wire, kw_only=True):
    task: str
    priority: Priority = "medium"
    metadata: dict[str, Any] = {}
    host: str = ""  # the host that runs it ("" or the core host's name: the core host)


class SessionRef(Wire, kw_only=True):
    session_id: str
    args: list[str] = []


class SessionInfo(Wire, kw_only=True):
    session_id: str
    task: str
    priority: Priority
    status: SessionStatus
    created: float
    updated: float
    working_dir: str
    output_dir: str
    database: str
    log_file: str
    metadata: dict[str, Any] = {}
    exit_code: int | None = None
    # what the run cost, from its CLI's final `result` event (0 until it ended, or when it printed none):
    cost_usd: float = 0.0  # result.total_cost_usd
    model_costs: dict[str, float] = {}  # result.modelUsage.<model>.costUSD
    tokens: int = 0  # billed tokens: input + output + cache read + cache creation of result.usage
    host: str = ""  # the agent host that runs it; "" for the core host (its log and outputs are here either way)


class SessionList(Wire, kw_only=True):
    sessions: list[SessionInfo]


class SessionCleanup(Wire, kw_only=True):
    max_age_hours: float = 24.0
    remove_outputs: bool = False


class CleanupReply(Wire, kw_only=True):
    removed: list[str] = []
    kept_outputs: bool = True


class PathReply(Wire, kw_only=True):
    path: str


class StatusReply(Wire, kw_only=True):
    session_id: str
    status: SessionStatus
    cost_usd: float = 0.0  # as SessionInfo.cost_usd
    tokens: int = 0


class AgentHistoryRequest(Wire, kw_only=True):
    """`hive.deployer.history`: an agent's LiveEvents read from its events.sqlite on the host
    (read-only), for when its harness does not answer `ctl.history`; replies `agent.HistoryReply`."""

    name: str
    limit: int = 200
    before_id: int | None = None


class TurnStatsRequest(Wire, kw_only=True):
    """`hive.deployer.turn_stats`: an agent's newest turn-stats rows from its turn-stats.sqlite."""

    name: str
    limit: int = 200


class TurnStatsReply(Wire, kw_only=True):
    turns: list[TurnStats]  # oldest first
