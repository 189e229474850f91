"""hive-agenthost: run the agents the hub placed on this host.

The deployer on the core host decides (spawn, start, stop, kill, restart,
deploy, destroy) and forwards to `hive.host.<me>.start|stop`; this service
runs each harness with the deployer's own `Procs` and runtimes (bwrap by
default, fail closed), in this host's `HIVE_HOME/agents/<name>/{state,creds}`.
A harness's NATS identity (`agent_<name>`, issued by the hub) is fetched over
this host's private inbox (`hive.host.<me>.up.creds`), written 0600 under
`HIVE_HOME/nats/creds/`, and given to the harness alone.

Every `HIVE_HOST_HEARTBEAT_S` (2 s) it reports on `hive.host.<me>.up.heartbeat`:
free memory, cpus, load, its agent limit, version, runtime, the agents it
runs (pid, start time) and why any ended unasked. It restarts nothing by
itself: the hub's crash watch decides, so a restart policy lives in one place.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import structlog

from hive_agenthost.join import load_host
from hive_agenthost.sessions import HostSessions
from hive_deployer import history, pool, transfer
from hive_deployer.hostregistry import meminfo
from hive_deployer.layout import Layout, check_name
from hive_deployer.lifecycle import Options
from hive_deployer.runtimes import Launch, Runtime, get_runtime
from hive_deployer.supervise import Procs
from hivewire import agentenv, config, natsauth, promsd, subjects
from hivewire.errors import HiveError
from hivewire.runner import resolve_nats_url
from hivewire.service import Context, Endpoint, HiveClient, MicroService
from hivewire.settings import Settings
from hivewire.tasks import cancel_and_wait
from hivewire.transport import Transport
from hivewire.wire import ops
from hivewire.wire.agent import HistoryReply
from hivewire.wire.common import Ok
from hivewire.wire.deployer import AgentHistoryRequest, TurnStatsReply, TurnStatsRequest
from hivewire.wire.hosts import (
    Chunk,
    ChunkRequest,
    CommitReply,
    CommitRequest,
    CredsReply,
    CredsRequest,
    DropRequest,
    HostAgentInfo,
    HostAgentReply,
    HostHeartbeat,
    HostSessionOutput,
    HostSessionRef,
    HostSessionStart,
    HostSessionStarted,
    HostStartRequest,
    HostStopRequest,
    PackReply,
    PackRequest,
)

log = structlog.get_logger("hive_agenthost.service")


def _version() -> str:
    try:
        return version("hive-agenthost")
    except PackageNotFoundError:
        return ""


class AgentHostService(MicroService):
    name = subjects.AGENTHOST_SERVICE
    description = "Hive agent host: runs the agents the hub placed here"

    def __init__(self, transport: Transport, settings: Settings, *, metrics_url: str = "",
                 host: str | None = None, runtime: Runtime | None = None) -> None:
        super().__init__(transport, metrics_url=metrics_url)
        self.settings = settings
        self.host = check_name(host or load_host(settings.home).name)
        self.layout = Layout(settings.home)
        self.runtime = runtime or get_runtime()
        self.opts = Options.from_env()
        self.nats_url = resolve_nats_url(settings)
        self.heartbeat_s = config.HOST_HEARTBEAT_S.get()
        self.agent_limit = config.HOST_AGENT_LIMIT.get()
        # Harnesses listen where the core's Prometheus reaches them only when asked to; their ports are
        # reported then, and the hub scrapes them at the address this host joined from.
        self.metrics_bind = config.HOST_METRICS_BIND.get()
        bind = self.metrics_bind or "127.0.0.1"
        self.harness_metrics_addr = f"[{bind}]:0" if ":" in bind else f"{bind}:0"
        self.procs = Procs(self.runtime, self.layout.logs, self._on_exit,
                           pool=pool.for_runtime(self.runtime, self.layout.logs, harness_cmd=self.opts.harness_cmd,
                                                 flag=self.opts.harness_pool, metrics_addr=self.harness_metrics_addr))
        self.sessions = HostSessions(self.layout, self.runtime, settings, self.nats_url, self.host)
        self.started: dict[str, float] = {}
        self.exits: dict[str, str] = {}
        self.client = HiveClient(transport, timeout=10.0)
        self._tasks: list[asyncio.Task[None]] = []
        self._beat_now = asyncio.Event()

    def instance_id(self) -> str | None:
        return self.host  # answers discovery only at `$SRV.<verb>.hive-agenthost.<host>` (its NATS user's)

    def metadata(self) -> dict[str, str]:
        return {**super().metadata(), "hive_host": self.host, "runtime": self.runtime.kind}

    def endpoints(self) -> list[Endpoint[Any]]:
        return [
            Endpoint.of(ops.HOST_START, self.h_start, host=self.host),
            Endpoint.of(ops.HOST_STOP, self.h_stop, host=self.host),
            Endpoint.of(ops.HOST_PACK, self.h_pack, host=self.host),
            Endpoint.of(ops.HOST_READ, self.h_read, host=self.host),
            Endpoint.of(ops.HOST_WRITE, self.h_write, host=self.host),
            Endpoint.of(ops.HOST_COMMIT, self.h_commit, host=self.host),
            Endpoint.of(ops.HOST_DROP, self.h_drop, host=self.host),
            Endpoint.of(ops.HOST_HISTORY, self.h_history, host=self.host),
            Endpoint.of(ops.HOST_TURN_STATS, self.h_turn_stats, host=self.host),
            Endpoint.of(ops.HOST_SESSION_START, self.h_session_start, host=self.host),
            Endpoint.of(ops.HOST_SESSION_READ, self.h_session_read, host=self.host),
            Endpoint.of(ops.HOST_SESSION_PACK, self.h_session_pack, host=self.host),
            Endpoint.of(ops.HOST_SESSION_DROP, self.h_session_drop, host=self.host),
        ]

    async def on_start(self) -> None:
        self._tasks.append(asyncio.create_task(self._heartbeats(), name="host-heartbeat"))

    async def on_stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        await self.sessions.stop()
        await self.procs.stop_all(self.opts.stop_timeout)

    # --- the hub's requests -------------------------------------------------------------
    async def h_start(self, ctx: Context, req: HostStartRequest) -> HostAgentReply:
        name = check_name(req.agent)
        pid = self.procs.pid(name)
        if pid is not None:  # idempotent: a deployer that restarted asks again
            return HostAgentReply(agent=name, pid=pid, at=self.started.get(name, 0.0))
        identity, readable = await self._identity(name)
        self.layout.make_agent_dirs(name)
        (self.layout.state(name) / promsd.ANNOUNCE_FILE).unlink(missing_ok=True)  # a previous harness's port
        at = time.time()
        await self.procs.start(self.launch(name, req.config_env, req.rev, identity, readable), req.rev or None)
        self.started[name] = at
        self.exits.pop(name, None)
        log.info("agent_started", agent=name, pid=self.procs.pid(name), rev=req.rev)
        self._beat_now.set()
        return HostAgentReply(agent=name, pid=self.procs.pid(name), at=at)

    async def h_stop(self, ctx: Context, req: HostStopRequest) -> HostAgentReply:
        name = check_name(req.agent)
        rc = await self.procs.stop(name, timeout=req.timeout, hard=req.hard)
        self.started.pop(name, None)
        log.info("agent_stopped", agent=name, rc=rc, hard=req.hard)
        self._beat_now.set()
        return HostAgentReply(agent=name, rc=rc, at=time.time())

    # --- moves (hive_deployer.transfer): the hub carries the bytes between hosts -----------------
    def _not_running(self, name: str) -> str:
        name = check_name(name)
        if self.procs.pid(name) is not None:
            raise HiveError("conflict", f"{name} is running on {self.host}: it cannot move")
        return name

    async def h_pack(self, ctx: Context, req: PackRequest) -> PackReply:
        name = check_name(req.agent) if req.live else self._not_running(req.agent)  # live: a backup's online copy
        return await asyncio.to_thread(transfer.pack, self.layout, name, req.transfer)

    async def h_read(self, ctx: Context, req: ChunkRequest) -> Chunk:
        data = await asyncio.to_thread(transfer.read, self.layout, req.transfer, req.offset, req.length)
        return Chunk(transfer=req.transfer, offset=req.offset, data=data)

    async def h_write(self, ctx: Context, req: Chunk) -> Ok:
        await asyncio.to_thread(transfer.write, self.layout, req.transfer, req.offset, req.data)
        return Ok()

    async def h_commit(self, ctx: Context, req: CommitRequest) -> CommitReply:
        name = self._not_running(req.agent)
        return await asyncio.to_thread(transfer.commit, self.layout, name, req.transfer, req.size, req.sha256,
                                       req.tree)

    async def h_drop(self, ctx: Context, req: DropRequest) -> Ok:
        name = self._not_running(req.agent) if req.files else check_name(req.agent)
        await asyncio.to_thread(transfer.drop, self.layout, name, req.transfer, req.files)
        if req.files:  # the agent left this host: so does its NATS identity
            natsauth.creds_path(self.settings.home, natsauth.agent_user(name)).unlink(missing_ok=True)
            log.info("agent_moved_away", agent=name)
        return Ok()

    # --- reads of an agent's files here, for the hub (its harness may be dead) --------------------
    async def h_history(self, ctx: Context, req: AgentHistoryRequest) -> HistoryReply:
        return HistoryReply(events=await asyncio.to_thread(history.read_events, self.layout, check_name(req.name),
                                                           req.limit, req.before_id))

    async def h_turn_stats(self, ctx: Context, req: TurnStatsRequest) -> TurnStatsReply:
        return TurnStatsReply(turns=await asyncio.to_thread(history.read_turns, self.layout, check_name(req.name),
                                                            req.limit))

    # --- sessions placed here (hive_agenthost.sessions) ---------------------------------------------
    async def h_session_start(self, ctx: Context, req: HostSessionStart) -> HostSessionStarted:
        return await self.sessions.start(req)

    async def h_session_read(self, ctx: Context, req: HostSessionRef) -> HostSessionOutput:
        return await self.sessions.read(req)

    async def h_session_pack(self, ctx: Context, req: HostSessionRef) -> PackReply:
        return await self.sessions.pack(req)

    async def h_session_drop(self, ctx: Context, req: HostSessionRef) -> Ok:
        await self.sessions.drop(req)
        return Ok()

    async def _identity(self, name: str) -> tuple[dict[str, str], list[Path]]:
        """The harness's own NATS identity, from the hub (never this host's)."""
        if (config.NATS_CREDS.get() or "").lower() == "none":
            return {"HIVE_NATS_CREDS": "none"}, []
        rep: CredsReply = await self.client.request(ops.HOST_CREDS, CredsRequest(agent=name), host=self.host)
        if not rep.creds:
            return {"HIVE_NATS_CREDS": "none"}, []
        path = natsauth.creds_path(self.settings.home, natsauth.agent_user(name))
        await asyncio.to_thread(natsauth.write_secret, path, rep.creds)
        return {"HIVE_NATS_CREDS": str(path)}, [path]

    def launch(self, name: str, config_env: dict[str, str], rev: str, identity: dict[str, str],
               readable: list[Path]) -> Launch:
        """What the deployer's `Agents.launch` gives a local harness, in this host's HIVE_HOME."""
        state, creds = self.layout.state(name), self.layout.creds(name)
        allowed, refused = agentenv.filter_config_env(config_env)
        if refused:
            log.warning("config_env_refused", agent=name, names=refused)
        env = {
            "HIVE_AGENT": name, "HIVE_HOME": str(self.settings.home), "HIVE_NATS_URL": self.nats_url,
            "HIVE_EVENTS_DB": str(state / "events.sqlite"), "HIVE_MODEL_FILE": str(state / "model"),
            "HIVE_METRICS_ADDR": self.harness_metrics_addr, "HIVE_AGENT_CMD": self.settings.agent_cmd,
            "HIVE_LOG_LEVEL": self.settings.log_level, "CLAUDE_CONFIG_DIR": str(creds), "HIVE_DEPLOYED_REV": rev,
            "HIVE_AGENT_CONFIG_ENV": json.dumps(allowed, sort_keys=True), **identity,
        }
        if self.settings.context_window:
            env["HIVE_CONTEXT_WINDOW"] = str(self.settings.context_window)
        argv = shlex.split(self.opts.harness_cmd) if self.opts.harness_cmd else [sys.executable, "-m", "hive_harness"]
        return Launch(name, argv, env, state, writable=[state, creds], hidden=[self.settings.home], readonly=readable)

    async def _on_exit(self, name: str, rc: int | None, reason: str) -> None:
        self.started.pop(name, None)
        self.exits[name] = f"{reason} on host {self.host}"
        log.warning("agent_exited", agent=name, rc=rc, reason=reason)
        self._beat_now.set()

    # --- heartbeats ------------------------------------------------------------------------------
    def _port(self, what: str, url: str | None) -> int:
        """The port of a /metrics URL served here, 0 when none is reported (refused: logged)."""
        if not self.metrics_bind or not url:
            return 0
        try:
            return promsd.url_port(url)
        except ValueError as exc:
            log.warning("metrics_port_refused", what=what, error=str(exc))
            return 0

    def _agent_port(self, name: str) -> int:
        """Its harness's announced port (a pooled agent has none of its own: the pool's counts it)."""
        r = self.procs.running.get(name)
        if not self.metrics_bind or r is None or isinstance(r.proc, pool.PoolProc):
            return 0
        try:
            return promsd.announced_port(self.layout.state(name)) or 0
        except ValueError as exc:  # the agent can write its state dir: what it wrote is not a port
            log.warning("metrics_port_refused", what=name, error=str(exc))
            return 0

    def heartbeat(self) -> HostHeartbeat:
        total, avail = meminfo()
        agents = [HostAgentInfo(name=n, pid=p, started_at=self.started.get(n, 0.0), metrics_port=self._agent_port(n))
                  for n in sorted(self.procs.running) if (p := self.procs.pid(n)) is not None]
        pooled = self.procs.pool.metrics_url if self.procs.pool is not None and self.procs.pool.pid else ""
        return HostHeartbeat(host=self.host, sent_at=time.time(), version=_version(), mem_total=total,
                             mem_available=avail, cpus=os.cpu_count() or 0, load1=os.getloadavg()[0],
                             agent_limit=self.agent_limit, runtime=self.runtime.kind, agents=agents,
                             exits=dict(self.exits), metrics_port=self._port("hive-agenthost", self.metrics_url),
                             pool_metrics_port=self._port("hive-harness-pool", pooled))

    async def _heartbeats(self) -> None:
        while True:
            try:
                await self.emit(ops.HOST_HEARTBEAT, self.heartbeat(), host=self.host)
            except Exception as exc:  # NATS down: the hub will call this host lost; keep trying
                log.warning("heartbeat_failed", error=str(exc))
            self._beat_now.clear()
            try:
                await asyncio.wait_for(self._beat_now.wait(), self.heartbeat_s)
            except TimeoutError:
                pass


async def build(transport: Transport, settings: Settings, metrics_url: str) -> AgentHostService:
    return AgentHostService(transport, settings, metrics_url=metrics_url)
