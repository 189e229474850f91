"""Deployer payloads: agent lifecycle and the session API for external systems."""

from __future__ import annotations

from typing import Any, Literal

from hivewire.wire.common import Wire

AgentRunState = Literal["running", "stopped", "crashed", "destroyed"]
Transient = Literal["starting", "stopping", "restarting", "rebuilding", "killing", "deploying"]
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
    last_error: str | None = None


class AgentList(Wire, kw_only=True):
    agents: list[AgentInfo]


class SessionCreate(Wire, kw_only=True):
    task: str
    priority: Priority = "medium"
    metadata: dict[str, Any] = {}


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


class SessionList(Wire, kw_only=True):
    sessions: list[SessionInfo]


class SessionCleanup(Wire, kw_only=True):
    max_age_hours: float = 24.0
    remove_outputs: bool = False


class PathReply(Wire, kw_only=True):
    path: str


class StatusReply(Wire, kw_only=True):
    session_id: str
    status: SessionStatus
