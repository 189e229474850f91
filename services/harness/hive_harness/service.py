"""The NATS micro layer of one agent's harness (`hive-harness`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import structlog

from hive_harness import egress, metrics
from hive_harness import sandbox as sb
from hive_harness.agent_cli import CliConfig, LoginSession
from hive_harness.budget import PARKED, Guard
from hive_harness.bus import MODEL_RE, Bus
from hive_harness.ledgerpub import LedgerPublisher
from hive_harness.limits import Limits
from hive_harness.loop import TurnLoop
from hive_harness.mcp_bridge import Bridge, build_server
from hive_harness.mcp_socket import McpSocketServer
from hive_harness.store import EventStore, TurnStatsStore, events_path, turns_path
from hivewire import codec, config, subjects
from hivewire.errors import HiveError
from hivewire.names import validate_agent_name
from hivewire.service import Context, Endpoint, HiveClient, MicroService
from hivewire.settings import Settings
from hivewire.transport import Msg, Subscription, Transport
from hivewire.wire import broker as wb
from hivewire.wire import ops
from hivewire.wire.agent import (
    AgentState,
    HistoryReply,
    HistoryRequest,
    LoginRequest,
    ModelRequest,
    Presence,
    PromptRequest,
)
from hivewire.wire.common import Empty, Ok

log = structlog.get_logger("hive_harness.service")
STOP_TASKS_S = 10.0  # how long a stop waits for the heartbeat and turn loop to end


class HarnessService(MicroService):
    name = "hive-harness"
    description = "Hive agent harness"

    def __init__(self, transport: Transport, settings: Settings, agent: str, *, metrics_url: str = "",
                 agent_config_env: dict[str, str] | None = None) -> None:
        super().__init__(transport, metrics_url=metrics_url)
        self.settings = settings
        self.agent = validate_agent_name(agent, allow_reserved=True)
        self.instance = uuid.uuid4().hex[:12]
        self.heartbeat_s = config.HEARTBEAT_S.get()
        adir = settings.agent_dir(self.agent)
        self.state_dir = adir / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (adir / "creds").mkdir(mode=0o700, exist_ok=True)  # the sandbox binds it: it must exist
        self.events = EventStore(events_path(self.state_dir))
        self.stats = TurnStatsStore(turns_path(self.state_dir))
        model_file = Path(settings.model_file) if settings.model_file else None
        self.bus = Bus(self.agent, self.state_dir, self.events, self.emit, settings.context_window, model_file,
                       publish_many=transport.publish_many)
        self.bus.typing.instance = self.instance
        self.bus.on_status = self._beat  # a status change shows in presence at once, not at the next heartbeat
        sandbox = sb.from_env()  # fails closed: a HiveError naming the fix when it cannot confine
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"hive-{self.agent}-"))
        self.cli = CliConfig(self.agent, self.state_dir, adir / "creds", self.run_dir, sandbox,
                             max_retries=config.CLAUDE_MAX_RETRIES.get(),
                             instance=self.instance,
                             config_env=config_env() if agent_config_env is None else agent_config_env,
                             limits=Limits.from_env(),
                             hidden=[settings.home], home=settings.home)
        self.client = HiveClient(transport, timeout=5.0)
        self.loop = TurnLoop(self.bus, self.cli, self.client, self.stats)
        self.guard = self.loop.guard = Guard(self.bus, self.client, None, self.loop.wake)
        self.guard.publisher = LedgerPublisher(getattr(transport, "nc", None), None, self.agent)
        bridge = Bridge(self.agent, self.client, on_received=self.loop.note_received, instance=self.instance)
        self.mcp = McpSocketServer(self.cli.mcp_socket, build_server(bridge))
        self.egress = egress.EgressProxy(self.cli.egress_socket, egress.allowlist(), agent=self.agent)
        self.login: LoginSession | None = None
        self.login_error: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake_sub: Subscription | None = None

    def metadata(self) -> dict[str, str]:
        return {**super().metadata(), "agent": self.agent, "instance": self.instance,
                "sandbox": self.cli.sandbox.kind}

    def endpoints(self) -> list[Endpoint[Any]]:
        a = self.agent
        return [
            Endpoint.of(ops.CTL_STATE, self.h_state, agent=a),
            Endpoint.of(ops.CTL_HISTORY, self.h_history, agent=a),
            Endpoint.of(ops.CTL_MODEL, self.h_model, agent=a),
            Endpoint.of(ops.CTL_COMPACT, self.h_compact, agent=a),
            Endpoint.of(ops.CTL_NEW_SESSION, self.h_new_session, agent=a),
            Endpoint.of(ops.CTL_CANCEL, self.h_cancel, agent=a),
            Endpoint.of(ops.CTL_PROMPT, self.h_prompt, agent=a),
            Endpoint.of(ops.CTL_LOGIN, self.h_login, agent=a),
            Endpoint.of(ops.CTL_RESUME, self.h_resume, agent=a),
        ]

    # --- handlers -----------------------------------------------------------------
    async def h_state(self, ctx: Context, req: Empty) -> AgentState:
        counts = await self.loop._counts()
        snap = self.bus.snapshot(counts.unread if counts else 0)
        snap.cost_usd = self.guard.last_cost_usd
        return self._fill(snap)

    def _fill(self, snap: AgentState) -> AgentState:
        """What the turn loop knows beyond the bus: login, usage limits, the hive tools."""
        lp = self.loop
        snap.login_reason = lp.login_reason if snap.status == "needs_login" else None
        snap.login_error = self.login_error
        snap.rate_limited_until = lp.rate_limited_until
        snap.plan = lp.plan.windows
        snap.tools_missing = lp.tools_missing
        return snap

    async def h_resume(self, ctx: Context, req: Empty) -> Ok:
        """Lift a runaway park (budget parks lift themselves when the budget allows)."""
        return Ok(ok=await self.guard.resume())

    async def h_history(self, ctx: Context, req: HistoryRequest) -> HistoryReply:
        return HistoryReply(events=await self.events.history(req.limit, req.before_id))

    async def h_model(self, ctx: Context, req: ModelRequest) -> AgentState:
        model = req.model.strip()
        if not MODEL_RE.fullmatch(model):
            raise HiveError("bad_request", f"invalid model name {req.model!r}")
        await self.bus.set_model(model)
        return self.bus.snapshot()

    async def h_compact(self, ctx: Context, req: Empty) -> Ok:
        self.loop.compact_requested = True
        self.loop.wake.set()
        await self.bus.emit("note", text="compaction requested by the operator")
        return Ok()

    async def h_new_session(self, ctx: Context, req: Empty) -> Ok:
        self.bus.new_session = True
        await self.bus.emit("note", text="new session armed: the next turn drops --continue")
        return Ok()

    async def h_cancel(self, ctx: Context, req: Empty) -> Ok:
        done = await self.loop.cancel()
        await self.bus.emit("note", text="turn cancelled by the operator" if done else "cancel: no turn running")
        return Ok(ok=done)

    async def h_prompt(self, ctx: Context, req: PromptRequest) -> Ok:
        if not req.text.strip():
            raise HiveError("bad_request", "empty prompt")
        if len(req.text) > 100_000:
            raise HiveError("too_large", "prompt over 100k characters")
        self.loop.on_prompt(req.text)
        return Ok()

    async def h_login(self, ctx: Context, req: LoginRequest) -> AgentState:
        if req.action == "start":
            self.login_error = None
            if self.login is not None:
                await self.login.cancel()
            self.login = LoginSession(self.cli)
            url = await self.login.start()
            self.bus.login_url = url
            await self.bus.set_status("needs_login", "needs_login")
            await self.bus.emit("status_changed", status="needs_login_started", url=url)
        elif req.action == "submit":
            if self.login is None or not self.login.running:
                raise HiveError("conflict", "no login in progress")
            if not req.code:
                raise HiveError("bad_request", "submit needs a code")
            ok, error = await self.login.submit(req.code)
            self.login_error = error
            if error is not None:  # a wrong code: the login process has ended; say so
                metrics.FAILURES.labels("login").inc()
                log.warning("login_failed", error=error)
                self.login = None
                await self.bus.emit("error", kind="login_failed", text=error)
            elif ok:
                await self.bus.emit("status_changed", status="login_done")
        else:
            if self.login is not None:
                await self.login.cancel()
                self.login = None
            self.bus.login_url = None
            await self.bus.emit("status_changed", status="needs_login_cancelled")
        return self._fill(self.bus.snapshot())

    # --- lifecycle ------------------------------------------------------------------
    async def on_prepare(self) -> None:
        sb.write_run_files(self.run_dir, self.agent)
        if self.cli.sandbox.confined:
            await asyncio.to_thread(self.cli.limits.setup, self.agent, self.instance)
        await self.mcp.start()
        await self.egress.start()
        await self.events.open()
        await self.stats.open()
        self.guard.stats_db = self.stats.db
        if self.guard.publisher is not None:
            self.guard.publisher.db = self.stats.db
        last = await self.stats.last(1)
        self.guard.last_cost_usd = last[0].cost_usd if last else None
        await self.bus.init_seq()

    async def on_start(self) -> None:
        self._wake_sub = await self.transport.subscribe(subjects.wake(self.agent), self._on_wake)
        self._tasks = [asyncio.create_task(self._heartbeat()), asyncio.create_task(self.loop.run())]
        if self.guard.publisher is not None:  # queued turn rows from before a restart go out now
            self._tasks.append(asyncio.create_task(self.guard.publisher.run()))
        await self.bus.emit("note", text=f"harness started (instance {self.instance}, model {self.bus.model})")
        await self.bus.announce(self.instance)  # whatever an earlier instance said, this is the status now

    async def _on_wake(self, msg: Msg) -> None:
        self.guard.invalidate()  # the ledger wakes an agent when a budget touching it changed
        try:
            self.loop.on_wake(codec.decode(msg.data, wb.Wake))
        except Exception:  # a malformed wake still wakes
            self.loop.on_wake(wb.Wake(reason="message"))

    async def on_stop(self) -> None:
        await self.loop.cancel()
        if self.login is not None:
            await self.login.cancel()
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            # bounded: a task that swallows its cancellation must not hang the stop (seen once
            # in CI as a 300 s teardown); say which one, and stop anyway
            _, stuck = await asyncio.wait(self._tasks, timeout=STOP_TASKS_S)
            if stuck:
                metrics.FAILURES.labels("stop").inc()
                log.warning("stop_tasks_stuck", tasks=sorted(t.get_name() for t in stuck), waited_s=STOP_TASKS_S)
        if self._wake_sub is not None:
            await self._wake_sub.unsubscribe()
        with contextlib.suppress(Exception):
            await self.emit(ops.PRESENCE, Presence(
                state="offline", since=time.time(), instance=self.instance, reason="stopped", ts=time.time()),
                agent=self.agent)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.bus.flush(), STOP_TASKS_S)
        await self.events.close()
        await self.stats.close()
        await self.mcp.close()
        await self.egress.close()
        self.cli.limits.teardown()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def presence(self) -> Presence:
        b = self.bus
        reason: str | None
        if self.loop.cli_missing is not None:
            state, reason = "waiting", "agent_cli_missing"
        elif b.status in ("needs_login", "rate_limited", *PARKED) or self.loop.parked_until:
            state, reason = "waiting", b.presence_reason or ("rate_limit" if b.rate_limited else b.status)
        else:
            state, reason = b.turn_state, ("no_progress" if b.turn_state == "stalled" else None)
        return Presence(state=state, since=b.turn_state_since, instance=self.instance,  # type: ignore[arg-type]
                        reason=reason, ts=time.time(), until=self.loop.rate_limited_until)

    async def _beat(self) -> None:
        await self.emit(ops.PRESENCE, self.presence(), agent=self.agent)

    async def _heartbeat(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self._beat()
            await asyncio.sleep(self.heartbeat_s)


def config_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The agent's `hive.env` (from its applied config), as the deployer hands it over
    (`HIVE_AGENT_CONFIG_ENV` of `env`, default this process's environment)."""
    raw = config.AGENT_CONFIG_ENV.get(env)
    try:
        env = json.loads(raw) if raw else {}
    except ValueError:
        log.error("bad_config_env", error="HIVE_AGENT_CONFIG_ENV is not JSON: ignored")
        return {}
    ok, refused = sb.filter_config_env({str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {})
    if refused:
        log.warning("config_env_refused", names=refused)
    return ok


async def build(transport: Transport, settings: Settings, metrics_url: str) -> HarnessService:
    agent = config.AGENT.get()
    if not agent:
        raise HiveError("bad_request", "HIVE_AGENT must name the agent this harness runs")
    return HarnessService(transport, settings, agent, metrics_url=metrics_url)
