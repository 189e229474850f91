"""FAKES of the deployer, backup and harness for the dashboard tests (the broker is the real one).

These are NOT the real services: small NATS micro services on the real
nats-server that implement just the subjects the dashboard calls, with the
real wire structs, and record what they were asked so tests can assert it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from hivewire.errors import HiveError
from hivewire.service import Context, Endpoint, MicroService
from hivewire.transport import Transport
from hivewire.wire import ops
from hivewire.wire.agent import (
    AgentState,
    HistoryReply,
    HistoryRequest,
    LiveEvent,
    LoginRequest,
    ModelRequest,
    Presence,
    PromptRequest,
    TurnStats,
)
from hivewire.wire.backup import BackupDone, ListRequest, RunRequest, Snapshot, SnapshotList
from hivewire.wire.common import Empty, Ok
from hivewire.wire.deployer import AgentInfo, AgentList, DestroyRequest, NameRequest, SpawnRequest
from hivewire.wire.hosts import HostList, HostNameRequest


class FakeDeployer(MicroService):
    name = "hive-deployer"
    description = "FAKE deployer for dashboard tests"

    def __init__(self, transport: Transport, agents: list[str], tombstones: list[str]) -> None:
        super().__init__(transport)
        self.infos = {n: AgentInfo(name=n, state="running", state_bytes=12_345 * (i + 1)) for i, n in enumerate(agents)}
        for t in tombstones:
            self.infos[t] = AgentInfo(name=t, state="destroyed", state_bytes=54_321)
        self.calls: list[tuple[str, str]] = []

    def endpoints(self) -> list[Endpoint[Any]]:
        eps: list[Endpoint[Any]] = [
            Endpoint.of(ops.DEPLOYER_LIST, self.list),
            Endpoint.of(ops.DEPLOYER_DESTROY, self.destroy),
            Endpoint.of(ops.DEPLOYER_SPAWN, self._verb("spawn")),
            Endpoint.of(ops.HOSTS_LIST, self.hosts_list),
        ]
        for op in (ops.DEPLOYER_REVIVE, ops.DEPLOYER_START, ops.DEPLOYER_STOP, ops.DEPLOYER_RESTART, ops.DEPLOYER_KILL,
                   ops.DEPLOYER_REBUILD):
            eps.append(Endpoint.of(op, self._verb(op.name)))
        return eps

    async def hosts_list(self, ctx: Context, req: HostNameRequest) -> HostList:
        return HostList(hosts=[])  # no other host has joined

    async def list(self, ctx: Context, req: Empty) -> AgentList:
        return AgentList(agents=list(self.infos.values()))

    async def destroy(self, ctx: Context, req: DestroyRequest) -> AgentInfo:
        info = self.infos.get(req.name)
        if info is None:
            raise HiveError("not_found", f"no agent {req.name}")
        self.calls.append(("purge" if req.purge else "destroy", req.name))
        if req.purge:
            del self.infos[req.name]
        else:
            info.state = "destroyed"
        await self.emit(ops.DEPLOYER_STATE, info, agent=req.name)
        return info

    def _verb(self, verb: str) -> Any:
        async def handler(ctx: Context, req: NameRequest | SpawnRequest) -> AgentInfo:
            if verb != "spawn" and req.name not in self.infos:
                raise HiveError("not_found", f"no agent {req.name}")
            self.calls.append((verb, req.name))
            info = self.infos.setdefault(req.name, AgentInfo(name=req.name, state="running"))
            info.state = "stopped" if verb in ("stop", "kill") else "running"
            await self.emit(ops.DEPLOYER_STATE, info, agent=req.name)
            return info

        return handler


class FakeBackup(MicroService):
    name = "hive-backup"
    description = "FAKE backup for dashboard tests"

    def __init__(self, transport: Transport) -> None:
        super().__init__(transport)
        self.snapshots = [Snapshot(snapshot_id="20240101T000000Z", created_at=time.time() - 3600,
                                   classes=["databases"], verified=True)]
        self.runs = 0

    def endpoints(self) -> list[Endpoint[Any]]:
        return [Endpoint.of(ops.BACKUP_LIST, self.list), Endpoint.of(ops.BACKUP_RUN, self.run)]

    async def list(self, ctx: Context, req: ListRequest) -> SnapshotList:
        return SnapshotList(snapshots=self.snapshots)

    async def run(self, ctx: Context, req: RunRequest) -> Snapshot:
        self.runs += 1
        snap = Snapshot(snapshot_id=f"snap-{self.runs}", created_at=time.time(), classes=req.classes or ["databases"])
        self.snapshots.insert(0, snap)  # like hive-backup: newest first
        await self.emit(ops.BACKUP_DONE, BackupDone(snapshot_id=snap.snapshot_id, ok=True, duration_s=0.2, bytes=4096))
        return snap


class FakeHarness(MicroService):
    """One agent's harness: state, history, controls; a prompt plays a short scripted turn."""

    name = "hive-harness"
    description = "FAKE harness for dashboard tests"

    def __init__(self, transport: Transport, agent: str, heartbeat_s: float = 0.5) -> None:
        super().__init__(transport)
        self.agent = agent
        self.instance = uuid.uuid4().hex[:12]
        self.heartbeat_s = heartbeat_s
        self.state = "idle"
        self.reason: str | None = None
        self.since = time.time()
        self.model = "haiku"
        self.status = "online"
        self.cost_usd = 0.0123  # the last turn's dollars (AgentState.cost_usd)
        self.login_url: str | None = None
        self.rate_limited_until: float | None = None  # a usage-limit park (also the presence's `until`)
        self.plan: dict[str, dict[str, Any]] = {}  # {window: {utilization, resets_at, status}}
        self.events: list[LiveEvent] = []
        self.prompts: list[str] = []
        self.controls: list[str] = []
        self._beat: asyncio.Task[None] | None = None
        self._turns = 0
        self.add_event("note", {"text": "harness started"})
        self.add_event("tool_use", {"name": "Read", "input": {"file_path": "/state/notes.md"}})
        self.add_event("tool_result", {"content": "notes: nothing yet"})

    def add_event(self, kind: str, payload: dict[str, Any]) -> LiveEvent:
        ev = LiveEvent(id=len(self.events) + 1, ts=time.time(), kind=kind, payload=payload)  # type: ignore[arg-type]
        self.events.append(ev)
        return ev

    async def event(self, kind: str, payload: dict[str, Any]) -> None:
        """One LiveEvent of this agent, as its harness publishes it."""
        await self.emit(ops.EVENTS, self.add_event(kind, payload), agent=self.agent)

    def endpoints(self) -> list[Endpoint[Any]]:
        a = self.agent
        return [
            Endpoint.of(ops.CTL_STATE, self.get_state, agent=a),
            Endpoint.of(ops.CTL_HISTORY, self.history, agent=a),
            Endpoint.of(ops.CTL_PROMPT, self.prompt, agent=a),
            Endpoint.of(ops.CTL_MODEL, self.set_model, agent=a),
            Endpoint.of(ops.CTL_COMPACT, self._control("compact"), agent=a),
            Endpoint.of(ops.CTL_CANCEL, self._control("cancel"), agent=a),
            Endpoint.of(ops.CTL_NEW_SESSION, self._control("new_session"), agent=a),
            Endpoint.of(ops.CTL_LOGIN, self.login, agent=a),
            Endpoint.of(ops.CTL_RESUME, self.resume, agent=a),
        ]

    async def get_state(self, ctx: Context, req: Empty) -> AgentState:
        return AgentState(status=self.status, turn_state="idle", turn_state_since=self.since,  # type: ignore[arg-type]
                          model=self.model, ctx_tokens=42_000, cost_tokens=120_000, cost_usd=self.cost_usd,
                          context_window=200_000, unread=2, login_url=self.login_url,
                          rate_limited_until=self.rate_limited_until, plan=self.plan)

    async def history(self, ctx: Context, req: HistoryRequest) -> HistoryReply:
        evs = [e for e in self.events if req.before_id is None or e.id < req.before_id]
        return HistoryReply(events=evs[-req.limit:])

    async def set_model(self, ctx: Context, req: ModelRequest) -> AgentState:
        self.model = req.model
        await self.event("model_changed", {"model": req.model})
        return await self.get_state(ctx, Empty())

    def _control(self, verb: str) -> Any:
        async def handler(ctx: Context, req: Empty) -> Ok:
            self.controls.append(verb)
            await self.event("note", {"text": f"operator: {verb}"})
            return Ok()

        return handler

    async def resume(self, ctx: Context, req: Empty) -> Ok:
        """As the real harness's ctl.resume: lifts a runaway park; ok says whether it was one."""
        self.controls.append("resume")
        was = self.status == "runaway"
        if was:
            self.status = "online"
        return Ok(ok=was)

    async def login(self, ctx: Context, req: LoginRequest) -> AgentState:
        """As the real harness: the agent's state, with the login URL once started."""
        self.controls.append(f"login_{req.action}")
        st = await self.get_state(ctx, Empty())
        if req.action == "start":
            st.login_url = "https://claude.example/oauth?code=xyz"
        return st

    async def prompt(self, ctx: Context, req: PromptRequest) -> Ok:
        self.prompts.append(req.text)
        asyncio.create_task(self.play_turn(req.text))
        return Ok()

    async def play_turn(self, text: str) -> None:
        started = time.time()
        await self.set_presence("thinking")
        await self.event("turn_start", {"wake_from": "operator", "unread": 0})
        if text.startswith("fail"):
            await self.event("turn_end", {"result_kind": "failed", "duration_ms": 10,
                                         "note": "API Error: 500 simulated upstream failure"})
            await self.set_presence("idle")
            return
        await self.event("thinking", {"text": "the operator asked something"})
        await self.event("tool_use", {"name": "Bash", "input": {"command": "ls -la /work"}})
        await self.event("tool_result", {"content": "total 0\n" + "drwxr-xr-x file\n" * 20})
        await self.event("assistant_text", {"text": f"Done: {text}"})
        self._turns += 1
        ctx = 40_000 + 30_000 * self._turns
        await self.event("token_usage_changed", {"ctx": ctx, "cost": 100_000 + ctx})
        await self.event("turn_end", {"result_kind": "ok", "duration_ms": 1234})
        await self.emit(ops.TURNS, agent=self.agent, payload=TurnStats(
            agent=self.agent, model=self.model, wake_from="operator", result_kind="ok", started_at=started,
            ended_at=time.time(), duration_ms=1234, input_tokens=1000, output_tokens=200, last_input_tokens=ctx,
            context_window=200_000, tool_call_count=1, tool_calls_json='{"Bash": 1}'))
        await self.set_presence("idle")

    async def set_presence(self, state: str, reason: str | None = None) -> None:
        self.state, self.reason, self.since = state, reason, time.time()
        await self.beat()

    async def beat(self) -> None:
        await self.emit(ops.PRESENCE, agent=self.agent, payload=Presence(
            state=self.state, reason=self.reason, since=self.since, instance=self.instance, ts=time.time(),  # type: ignore[arg-type]
            until=self.rate_limited_until))

    async def rate_limit(self, until: float, plan: dict[str, dict[str, Any]]) -> None:
        """As the real harness parks on a usage limit: status rate_limited, presence waiting/rate_limit until."""
        self.status, self.rate_limited_until, self.plan = "rate_limited", until, plan
        await self.event("status_changed", {"status": "rate_limited", "reason": "rate_limit"})
        await self.set_presence("waiting", "rate_limit")

    async def on_start(self) -> None:
        self._beat = asyncio.create_task(self._heartbeat())

    async def on_stop(self) -> None:
        self.stop_heartbeat()

    def stop_heartbeat(self) -> None:
        if self._beat:
            self._beat.cancel()
            self._beat = None

    async def _heartbeat(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self.heartbeat_s)
