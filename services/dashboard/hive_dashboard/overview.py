"""The home page's data: every section fetched concurrently, each failing alone."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import structlog

from hive_dashboard import approvals as deploy_diffs
from hive_dashboard.hub import Hub, PresenceView
from hive_dashboard.schemas import AgentView, ApprovalView, BackupView, Overview, PlanWindow, StorageView
from hive_dashboard.upstream import Upstream
from hivewire.errors import HiveError
from hivewire.names import OPERATOR
from hivewire.settings import Settings
from hivewire.wire import ops
from hivewire.wire.agent import AgentState
from hivewire.wire.backup import ListRequest
from hivewire.wire.broker import (
    Approval,
    ApprovalsListRequest,
    MessagesListRequest,
    QuestionsListRequest,
)
from hivewire.wire.common import Empty
from hivewire.wire.deployer import AgentInfo

log = structlog.get_logger("hive_dashboard.overview")
T = TypeVar("T")
_size_cache: dict[Path, tuple[float, int]] = {}


def presence_label(p: PresenceView | None, status: str | None) -> str:
    """The one badge word: idle, thinking, compacting, waiting(reason), needs_login, rate_limited, offline, dead."""
    if p is None:
        return "offline"
    if not p.alive:
        return "offline" if p.state == "offline" else "dead"
    if status in ("needs_login", "rate_limited"):
        return status
    if p.state == "waiting":
        return f"waiting({p.reason})" if p.reason else "waiting"
    return p.state


def plan_windows(plan: dict[str, dict[str, Any]]) -> dict[str, PlanWindow]:
    """The harness's `plan` as typed windows; a window that does not fit the shape is left out."""
    out: dict[str, PlanWindow] = {}
    for name, w in plan.items():
        try:
            out[name] = msgspec.convert(w, PlanWindow, strict=False)
        except msgspec.ValidationError:
            log.warning("bad_plan_window", window=name)
    return out


def rate_limited_until(p: PresenceView | None, st: AgentState | None) -> float | None:
    """When the agent's usage-limit park ends: its ctl.state, else its live heartbeat (waiting/rate_limit)."""
    if st is not None:
        return st.rate_limited_until
    if p is not None and p.alive and p.state == "waiting" and p.reason == "rate_limit":
        return p.until
    return None


def dir_size(path: Path, ttl: float = 30.0) -> int:
    """Bytes under `path` (cached for `ttl` s; missing means 0)."""
    now = time.monotonic()
    hit = _size_cache.get(path)
    if hit and now - hit[0] < ttl:
        return hit[1]
    total = 0
    if path.is_file():
        total = path.stat().st_size
    elif path.is_dir():
        for root, _dirs, files in os.walk(path):
            for f in files:
                try:
                    total += os.lstat(os.path.join(root, f)).st_size
                except OSError:
                    pass
    _size_cache[path] = (now, total)
    return total


class OverviewBuilder:
    def __init__(self, up: Upstream, hub: Hub, settings: Settings) -> None:
        self.up, self.hub, self.settings = up, hub, settings

    async def _section(self, errors: dict[str, str], name: str, coro: Awaitable[T]) -> T | None:
        """A section's reply, or None with its error noted in `errors`."""
        try:
            return await coro
        except HiveError as err:
            errors[name] = f"{err.code}: {err.message}"
            return None

    async def agent_state(self, name: str) -> AgentState | None:
        try:
            return await self.up.request(ops.CTL_STATE, Empty(), timeout=self.up.cfg.state_timeout_s, agent=name)
        except HiveError:
            return None

    def agent_view(self, name: str, info: AgentInfo | None, st: AgentState | None) -> AgentView:
        p = self.hub.presence.get(name)
        b = self.hub.badges.get(name, {})
        turns = self.hub.turns.get(name)
        # the harness's own answer now beats what the hub pieced together from events and heartbeats
        status = st.status if st else b.get("status")
        return AgentView(
            name=name,
            label=presence_label(p, status),
            presence=p,
            run_state=info.state if info else None,
            transient=info.transient if info else None,
            status=status,
            turn_state=b.get("turn_state") or (st.turn_state if st else None),
            model=b.get("model") or (st.model if st else None),
            ctx=b.get("ctx", st.ctx_tokens if st else None),
            cost=b.get("cost", st.cost_tokens if st else None),
            context_window=st.context_window if st else None,
            unread=st.unread if st else 0,
            last_turn=turns[-1] if turns else None,
            state_bytes=(info.state_bytes if info and info.state_bytes else 0),
            login_url=st.login_url if st else None,
            confined=info.confined if info else True,
            rate_limited_until=rate_limited_until(p, st),
            plan=plan_windows(st.plan) if st else {},
            host=info.host if info else None,
            host_lost=bool(info and info.host_lost),
        )

    async def build(self) -> Overview:
        errors: dict[str, str] = {}
        s = self._section
        deployed, approvals, questions, messages, snaps = await asyncio.gather(
            s(errors, "agents", self.up.request(ops.DEPLOYER_LIST, Empty())),
            s(errors, "approvals", self.up.request(ops.APPROVALS_LIST, ApprovalsListRequest(status="pending"))),
            s(errors, "questions", self.up.request(ops.QUESTIONS_LIST, QuestionsListRequest(open_only=True))),
            s(errors, "messages", self.up.request(ops.MESSAGES_LIST, MessagesListRequest(limit=100))),
            s(errors, "backups", self.up.request(ops.BACKUP_LIST, ListRequest())),
        )
        infos = {a.name: a for a in (deployed.agents if deployed else [])}
        live = [n for n, a in infos.items() if a.state != "destroyed"]
        names = sorted(set(live) | {n for n in self.hub.presence if infos.get(n) is None or n in live})
        states = await asyncio.gather(*(self.agent_state(n) for n in names))
        agents = [self.agent_view(n, infos.get(n), st) for n, st in zip(names, states, strict=True)]
        pending = approvals.approvals if approvals else []
        views = await asyncio.gather(*(self.approval_view(a, infos if deployed else None) for a in pending))
        msgs = messages.messages if messages else []
        storage = await asyncio.to_thread(self.storage, agents, list(infos.values()))
        return Overview(
            now=time.time(),
            agents=agents,
            tombstones=[a for a in infos.values() if a.state == "destroyed"],
            approvals=list(views),
            questions=[q for q in (questions.questions if questions else []) if q.answered_at is None],
            inbox=[m for m in msgs if m.to == OPERATOR],
            messages=msgs,
            # hive-backup lists newest first: keep the newest 20
            backups=BackupView(snapshots=(snaps.snapshots if snaps else [])[:20], last_done=self.hub.last_backup),
            storage=storage,
            errors=errors,
        )

    async def approval_view(self, a: Approval, infos: dict[str, AgentInfo] | None) -> ApprovalView:
        """An approval with what approving it deploys (apply_commit: the diff from the deployed commit)."""
        if a.kind != "apply_commit" or not a.commit_ref:
            return ApprovalView(approval=a)
        if infos is None:
            d = deploy_diffs.DeployDiff(None, None, error="the deployer did not say what is deployed")
        else:
            info = infos.get(a.agent)
            d = await deploy_diffs.deploy_diff(self.settings, a.agent, a.commit_ref,
                                               info.deployed_sha if info else None)
        return ApprovalView(approval=a, diff=d.text, diff_base=d.base, diff_bytes=d.total_bytes,
                            diff_truncated=d.truncated, diff_error=d.error, confirm_required=d.needs_confirm)

    async def pending_approval(self, approval_id: str) -> ApprovalView | None:
        """One pending approval as the home page shows it (None: not pending, the broker decides)."""
        reply = await self.up.request(ops.APPROVALS_LIST, ApprovalsListRequest(status="pending"))
        a = next((x for x in reply.approvals if x.approval_id == approval_id), None)
        if a is None:
            return None
        infos: dict[str, AgentInfo] | None
        try:
            deployed = await self.up.request(ops.DEPLOYER_LIST, Empty())
            infos = {i.name: i for i in deployed.agents}
        except HiveError:
            infos = None
        return await self.approval_view(a, infos)

    def storage(self, agents: list[AgentView], infos: list[AgentInfo]) -> StorageView:
        per: dict[str, int] = {}
        for info in infos:
            per[info.name] = info.state_bytes or dir_size(self.settings.agent_dir(info.name))
        for a in agents:
            per.setdefault(a.name, dir_size(self.settings.agent_dir(a.name)))
        broker = sum(dir_size(self.settings.home / (db + side)) for db in ("broker.sqlite", "broker-search.sqlite")
                     for side in ("", "-wal"))
        backups = dir_size(self.settings.home / "backups")
        return StorageView(per_agent=per, broker_bytes=broker, backups_bytes=backups,
                           total_bytes=sum(per.values()) + broker + backups)


