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

from hivewire import subjects
from hivewire.errors import HiveError
from hivewire.service import Context, Endpoint, MicroService
from hivewire.transport import Transport
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
            Endpoint("list", subjects.deployer("list"), Empty, self.list),
            Endpoint("destroy", subjects.deployer("destroy"), DestroyRequest, self.destroy),
        ]
        eps.append(Endpoint("spawn", subjects.deployer("spawn"), SpawnRequest, self._verb("spawn")))  # as the real one
        eps.append(Endpoint("hosts_list", subjects.hosts("list"), HostNameRequest, self.hosts_list))
        for verb in ("revive", "start", "stop", "restart", "kill", "rebuild"):
            eps.append(Endpoint(verb, subjects.deployer(verb), NameRequest, self._verb(verb)))
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
        await self.publish(subjects.deployer_state(req.name), info)
        return info

    def _verb(self, verb: str) -> Any:
        async def handler(ctx: Context, req: NameRequest) -> AgentInfo:
            if verb != "spawn" and req.name not in self.infos:
                raise HiveError("not_found", f"no agent {req.name}")
            self.calls.append((verb, req.name))
            info = self.infos.setdefault(req.name, AgentInfo(name=req.name, state="running"))
            info.state = "stopped" if verb in ("stop", "kill") else "running"
            await self.publish(subjects.deployer_state(req.name), info)
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
        return [Endpoint("list", subjects.backup("list"), ListRequest, self.list),
                Endpoint("run", subjects.backup("run"), RunRequest, self.run)]

    async def list(self, ctx: Context, req: ListRequest) -> SnapshotList:
        return SnapshotList(snapshots=self.snapshots)

    async def run(self, ctx: Context, req: RunRequest) -> Snapshot:
        self.runs += 1
        snap = Snapshot(snapshot_id=f"snap-{self.runs}", created_at=time.time(), classes=req.classes or ["databases"])
        self.snapshots.insert(0, snap)  # like hive-backup: newest first
        await self.publish(subjects.BACKUP_DONE, BackupDone(snapshot_id=snap.snapshot_id, ok=True, duration_s=0.2,
                                                            bytes=4096))
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

    async def emit(self, kind: str, payload: dict[str, Any]) -> None:
        await self.publish(subjects.events(self.agent), self.add_event(kind, payload))

    def endpoints(self) -> list[Endpoint[Any]]:
        c = subjects.ctl
        return [
            Endpoint("state", c(self.agent, "state"), Empty, self.get_state),
            Endpoint("history", c(self.agent, "history"), HistoryRequest, self.history),
            Endpoint("prompt", c(self.agent, "prompt"), PromptRequest, self.prompt),
            Endpoint("model", c(self.agent, "model"), ModelRequest, self.set_model),
            Endpoint("compact", c(self.agent, "compact"), Empty, self._control("compact")),
            Endpoint("cancel", c(self.agent, "cancel"), Empty, self._control("cancel")),
            Endpoint("new_session", c(self.agent, "new_session"), Empty, self._control("new_session")),
            Endpoint("login", c(self.agent, "login"), LoginRequest, self.login),
            Endpoint("resume", c(self.agent, "resume"), Empty, self.resume),
        ]

    async def get_state(self, ctx: Context, req: Empty) -> AgentState:
        return AgentState(status=self.status, turn_state="idle", turn_state_since=self.since,  # type: ignore[arg-type]
                          model=self.model, ctx_tokens=42_000, cost_tokens=120_000, cost_usd=self.cost_usd,
                          context_window=200_000, unread=2, login_url=self.login_url,
                          rate_limited_until=self.rate_limited_until, plan=self.plan)

    async def history(self, ctx: Context, req: HistoryRequest) -> HistoryReply:
        evs = [e for e in self.events if req.before_id is None or e.id < req.before_id]
        return HistoryReply(events=evs[-req.limit:])

    async def set_model(self, ctx: Context, req: ModelRequest) -> Ok:
        self.model = req.model
        await self.emit("model_changed", {"model": req.model})
        return Ok()

    def _control(self, verb: str) -> Any:
        async def handler(ctx: Context, req: Empty) -> Ok:
            self.controls.append(verb)
            await self.emit("note", {"text": f"operator: {verb}"})
            return Ok()

        return handler

    async def resume(self, ctx: Context, req: Empty) -> Ok:
        """As the real harness's ctl.resume: lifts a runaway park; ok says whether it was one."""
        self.controls.append("resume")
        was = self.status == "runaway"
        if was:
            self.status = "online"
        return Ok(ok=was)

    async def login(self, ctx: Context, req: LoginRequest) -> dict[str, Any]:
        self.controls.append(f"login_{req.action}")
        return {"login_url": "https://claude.example/oauth?code=xyz"} if req.action == "start" else {"ok": True}

    async def prompt(self, ctx: Context, req: PromptRequest) -> Ok:
        self.prompts.append(req.text)
        asyncio.create_task(self.play_turn(req.text))
        return Ok()

    async def play_turn(self, text: str) -> None:
        started = time.time()
        await self.set_presence("thinking")
        await self.emit("turn_start", {"wake_from": "operator", "unread": 0})
        if text.startswith("fail"):
            await self.emit("turn_end", {"result_kind": "failed", "duration_ms": 10,
                                         "note": "API Error: 500 simulated upstream failure"})
            await self.set_presence("idle")
            return
        await self.emit("thinking", {"text": "the operator asked something"})
        await self.emit("tool_use", {"name": "Bash", "input": {"command": "ls -la /work"}})
        await self.emit("tool_result", {"content": "total 0\n" + "drwxr-xr-x file\n" * 20})
        await self.emit("assistant_text", {"text": f"Done: {text}"})
        self._turns += 1
        ctx = 40_000 + 30_000 * self._turns
        await self.emit("token_usage_changed", {"ctx": ctx, "cost": 100_000 + ctx})
        await self.emit("turn_end", {"result_kind": "ok", "duration_ms": 1234})
        await self.publish(subjects.turns(self.agent), TurnStats(
            agent=self.agent, model=self.model, wake_from="operator", result_kind="ok", started_at=started,
            ended_at=time.time(), duration_ms=1234, input_tokens=1000, output_tokens=200, last_input_tokens=ctx,
            context_window=200_000, tool_call_count=1, tool_calls_json='{"Bash": 1}'))
        await self.set_presence("idle")

    async def set_presence(self, state: str, reason: str | None = None) -> None:
        self.state, self.reason, self.since = state, reason, time.time()
        await self.beat()

    async def beat(self) -> None:
        await self.publish(subjects.presence(self.agent), Presence(
            state=self.state, reason=self.reason, since=self.since, instance=self.instance, ts=time.time(),  # type: ignore[arg-type]
            until=self.rate_limited_until))

    async def rate_limit(self, until: float, plan: dict[str, dict[str, Any]]) -> None:
        """As the real harness parks on a usage limit: status rate_limited, presence waiting/rate_limit until."""
        self.status, self.rate_limited_until, self.plan = "rate_limited", until, plan
        await self.emit("status_changed", {"status": "rate_limited", "reason": "rate_limit"})
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
