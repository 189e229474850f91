"""The NATS micro layer of hive-deployer: endpoints, presence watch, timers."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import structlog

from hive_deployer import archive, hostreads, metrics, migrate, retention
from hive_deployer.bridge import BrokerBridge
from hive_deployer.deploys import Deploys
from hive_deployer.hosts import Hosts
from hive_deployer.layout import Layout, check_name
from hive_deployer.lifecycle import Options
from hive_deployer.microrelay import MicroRelay, running
from hive_deployer.placement import HostProcs
from hive_deployer.runtimes import Runtime, get_runtime
from hive_deployer.sessionhost import RemoteSessions
from hive_deployer.sessions import Sessions, jetstream_publisher
from hive_deployer.store import AgentRow, Store
from hive_deployer.verbs import Lifecycle
from hivewire import codec, config, subjects
from hivewire.errors import HiveError
from hivewire.names import OPERATOR
from hivewire.runner import resolve_nats_url
from hivewire.service import Context, Endpoint, HiveClient, MicroService
from hivewire.settings import Settings
from hivewire.tasks import cancel_and_wait
from hivewire.transport import Msg, Subscription, Transport
from hivewire.wire import ops
from hivewire.wire.agent import HistoryReply, Presence
from hivewire.wire.broker import RegistryRequest, SendRequest
from hivewire.wire.common import Empty
from hivewire.wire.deployer import (
    AgentHistoryRequest,
    AgentInfo,
    AgentList,
    ArchiveReply,
    CleanupReply,
    DeployReply,
    DeployRequest,
    DestroyRequest,
    ExportRequest,
    ImportRequest,
    NameRequest,
    PathReply,
    SessionCleanup,
    SessionCreate,
    SessionInfo,
    SessionList,
    SessionRef,
    SpawnRequest,
    StatusReply,
    TurnStatsReply,
    TurnStatsRequest,
)

log = structlog.get_logger("hive_deployer.service")
SYSTEM_SENDER = OPERATOR
REGISTRY = {"upsert": ops.REGISTRY_UPSERT, "remove": ops.REGISTRY_REMOVE}  # the broker's known agents


class NatsNotifier:
    """State publications, the broker's agent registry and system messages (sent as `operator`, prefixed).

    Registry updates and messages go through one ordered queue, so "spawned" reaches a
    broker that already knows the agent; a broker that is down costs a log line, never an action.
    """

    def __init__(self, svc: DeployerService) -> None:
        self.svc = svc
        self.client = HiveClient(svc.transport, timeout=2.0)
        self._queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self._registered: dict[str, str] = {}
        self._worker: asyncio.Task[None] | None = None

    def _put(self, item: tuple[str, str, str]) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="deployer-notify")
        self._queue.put_nowait(item)

    async def state_changed(self, info: AgentInfo) -> None:
        await self.svc.emit(ops.DEPLOYER_STATE, info, agent=info.name)
        want = "remove" if info.state == "destroyed" else "upsert"
        if self._registered.get(info.name) != want:
            self._registered[info.name] = want
            self._put(("registry", want, info.name))

    async def system_message(self, to: str, body: str) -> None:
        self._put(("send", to, body))

    def reconcile(self) -> None:
        """Queue a full registry sync (ordered after every update already queued)."""
        self._put(("reconcile", "", ""))

    async def _reconcile(self) -> None:
        """Make the broker's known agents match the deployer's (updates lost while it was down)."""
        known = set((await self.client.request(ops.REGISTRY_LIST, Empty())).agents)
        for row in await self.svc.store.agents():
            want = "remove" if row.state == "destroyed" else "upsert"
            if (want == "upsert") != (row.name in known):
                await self.client.request(REGISTRY[want], RegistryRequest(name=row.name))
                log.info("registry_reconciled", agent=row.name, action=want)
            self._registered[row.name] = want

    async def _work(self) -> None:
        while True:
            kind, a, b = await self._queue.get()
            try:
                if kind == "reconcile":
                    await self._reconcile()
                elif kind == "registry":
                    await self.client.request(REGISTRY[a], RegistryRequest(name=b))
                else:
                    await self.client.request(ops.BROKER_SEND, SendRequest(to=a, body=b), agent=SYSTEM_SENDER)
            except Exception as exc:  # the broker may be down or not know the agent yet
                if kind == "registry":
                    self._registered.pop(b, None)  # retried by the next change or reconcile
                metrics.FAILURES.labels(kind).inc()
                log.info("broker_call_failed", kind=kind, target=a, error=str(exc))

    async def close(self) -> None:
        await cancel_and_wait(self._worker)


class DeployerService(MicroService):
    name = "hive-deployer"
    description = "Hive deployer: agent lifecycle, deploys, runtimes, sessions"

    def __init__(self, transport: Transport, settings: Settings, *, metrics_url: str = "",
                 runtime: Runtime | None = None, options: Options | None = None,
                 ensure_manager: bool | None = None) -> None:
        super().__init__(transport, metrics_url=metrics_url)
        self.settings = settings
        self.layout = Layout(settings.home)
        self.store = Store(self.layout)
        self.runtime = runtime or get_runtime()
        nats_url = resolve_nats_url(settings)
        self.notifier = NatsNotifier(self)
        self.agents = Lifecycle(self.layout, self.store, self.runtime, settings, self.notifier,
                                options or Options.from_env(), nats_url)
        self.agents.probe = self._probe
        # Agents on other hosts (issue 26): the process table forwards their verbs to their host.
        self.hosts = Hosts(transport, settings.home, self.agents)
        procs = HostProcs(self.runtime, self.layout.logs, self.agents._on_exit, on_stopped=self.agents._unlist_metrics,
                          pool=self.agents.procs.pool)
        procs.hosts = self.hosts
        self.agents.procs = procs
        self.agents.host_view, self.agents.place = self.hosts.view, self.hosts.place
        self.deploys = Deploys(self.agents)
        self.sessions = Sessions(self.layout, self.store, self.runtime, settings, nats_url)
        self.sessions.remote = RemoteSessions(self.sessions, self.hosts)
        self.bridge = BrokerBridge(transport, self.deploys)
        self.srv_relay = MicroRelay(transport, running(self.agents.procs))  # harnesses in `$SRV` discovery
        self.retention = retention.Policy.from_env()
        self.ensure_manager = config.DEPLOYER_ENSURE_MANAGER.get() if ensure_manager is None else ensure_manager
        self.registry_sync_s = config.DEPLOYER_REGISTRY_SYNC_S.get()
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[Subscription] = []
        self.client = HiveClient(transport, timeout=2.0)

    def metadata(self) -> dict[str, str]:
        return {**super().metadata(), "runtime": self.runtime.kind, "home": str(self.settings.home)}

    def endpoints(self) -> list[Endpoint[Any]]:
        of = Endpoint.of
        return [
            of(ops.DEPLOYER_LIST, self.h_list),
            of(ops.DEPLOYER_SPAWN, self.h_spawn),
            of(ops.DEPLOYER_DESTROY, self.h_destroy),
            *(of(op, self.h_verb) for op in (ops.DEPLOYER_REVIVE, ops.DEPLOYER_START, ops.DEPLOYER_STOP,
                                             ops.DEPLOYER_RESTART, ops.DEPLOYER_KILL, ops.DEPLOYER_REBUILD)),
            of(ops.DEPLOYER_INIT_CONFIG, self.h_init_config),
            of(ops.DEPLOYER_PROPOSE, self.h_propose),
            of(ops.DEPLOYER_APPROVE, self.h_approve),
            of(ops.DEPLOYER_DENY, self.h_deny),
            of(ops.DEPLOYER_EXPORT, self.h_export),
            of(ops.DEPLOYER_IMPORT, self.h_import),
            of(ops.DEPLOYER_HISTORY, self.h_history),
            of(ops.DEPLOYER_TURN_STATS, self.h_turn_stats),
            of(ops.SESSION_CREATE, self.h_s_create),
            of(ops.SESSION_START, self.h_s_start),
            of(ops.SESSION_STATUS, self.h_s_status),
            of(ops.SESSION_GET, self.h_s_get),
            of(ops.SESSION_LIST, self.h_s_list),
            of(ops.SESSION_OUTPUT_DIR, self.h_s_output),
            of(ops.SESSION_LOG, self.h_s_log),
            of(ops.SESSION_CLEANUP, self.h_s_cleanup),
            *self.hosts.endpoints(),
        ]

    # --- lifecycle ------------------------------------------------------------
    async def on_prepare(self) -> None:
        await self.store.open()
        if not migrate.done(self.layout):
            await migrate.run(self.layout, self.store, self.runtime.kind)
            await self.agents.write_meta("startup migration: re-render meta")
            migrate.mark(self.layout)
        await self.sessions.recover()

    async def on_start(self) -> None:
        self._subs.append(await self.transport.subscribe(subjects.agent_pattern("presence"), self._on_presence))
        await self.hosts.start()
        await self.agents.resume()
        if self.ensure_manager:
            try:
                await self.agents.ensure_manager()
            except HiveError as exc:
                log.error("ensure_manager_failed", error=exc.message)
        await self.agents.refresh_gauge()
        await self.bridge.start()
        await self.srv_relay.start()
        if (nc := getattr(self.transport, "nc", None)) is not None:  # no JetStream on a MemoryTransport
            self.sessions.start_ledger(jetstream_publisher(nc))  # sessions' costs to the ledger
        self._tasks += [
            asyncio.create_task(self._presence_loop(), name="presence-watch"),
            asyncio.create_task(self._retention_loop(), name="events-retention"),
            asyncio.create_task(self._registry_loop(), name="registry-sync"),
        ]

    async def on_stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        await self.hosts.stop()
        await self.srv_relay.stop()
        await self.bridge.stop()
        for sub in self._subs:
            await sub.unsubscribe()
        await self.agents.procs.stop_all(self.agents.opts.stop_timeout)
        await self.sessions.stop()
        await self.notifier.close()
        await self.store.close()

    async def _on_presence(self, msg: Msg) -> None:
        name = subjects.token(msg.subject, 2)
        try:
            p = codec.decode(msg.data, Presence)
        except Exception:
            return
        self.agents.saw_presence(name, p.instance, p.state)

    async def _presence_loop(self) -> None:
        while True:
            await asyncio.sleep(min(2.0, self.agents.opts.presence_stale_s / 4))
            self.agents.check_presence()

    async def _registry_loop(self) -> None:
        """Re-sync the broker's agent registry now and then (a broker that was down missed updates)."""
        while True:
            self.notifier.reconcile()
            self.bridge.kick()
            await asyncio.sleep(self.registry_sync_s)

    async def _retention_loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(retention.sweep, self.layout, self.retention)
            except Exception:
                metrics.FAILURES.labels("retention").inc()
                log.exception("retention_failed")
            await asyncio.sleep(self.retention.interval_s)

    async def _probe(self, name: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.agents.procs.pid(name) is None:
                return False
            try:
                await self.client.request(ops.CTL_STATE, Empty(), timeout=1.0, agent=name)
                return True
            except Exception:
                await asyncio.sleep(0.2)
        return False

    # --- handlers ---------------------------------------------------------------
    async def h_list(self, ctx: Context, req: Empty) -> AgentList:
        return AgentList(agents=await self.agents.list())

    async def h_spawn(self, ctx: Context, req: SpawnRequest) -> AgentInfo:
        return await self.agents.spawn(req.name, req.runtime, host=req.host)

    async def h_destroy(self, ctx: Context, req: DestroyRequest) -> AgentInfo:
        return await self.agents.destroy(req.name, purge=req.purge)

    async def h_verb(self, ctx: Context, req: NameRequest) -> AgentInfo:
        verb = subjects.token(ctx.subject, 2)
        fn = {"revive": self.agents.revive, "start": self.agents.start, "stop": self.agents.stop,
              "restart": self.agents.restart, "kill": self.agents.kill, "rebuild": self.agents.rebuild}[verb]
        return await fn(check_name(req.name))

    async def h_init_config(self, ctx: Context, req: NameRequest) -> PathReply:
        await self.deploys.init_config(req.name)
        return PathReply(path=str(self.layout.config(req.name)))

    async def h_propose(self, ctx: Context, req: DeployRequest) -> DeployReply:
        if not req.commit_ref:
            raise HiveError("bad_request", "commit_ref is required")
        return await self.deploys.propose(req.name, req.id, req.commit_ref)

    async def h_approve(self, ctx: Context, req: DeployRequest) -> DeployReply:
        return await self.deploys.approve(req.name, req.id, req.commit_ref)

    async def h_deny(self, ctx: Context, req: DeployRequest) -> DeployReply:
        return await self.deploys.deny(req.name, req.id, req.note)

    async def h_export(self, ctx: Context, req: ExportRequest) -> ArchiveReply:
        row = await self.agents.row(req.name)
        host = self.hosts.placed(row.name)
        if host is None:
            size = await asyncio.to_thread(archive.export_agent, self.layout, row.name, dataclasses.asdict(row),
                                           Path(req.path), req.include_creds)
        else:  # its state/ and creds/ live on that host: fetch a checked copy first
            async with hostreads.fetched_files(self.hosts, row.name, host) as files:
                size = await asyncio.to_thread(archive.export_agent, self.layout, row.name, dataclasses.asdict(row),
                                               Path(req.path), req.include_creds, files)
        return ArchiveReply(name=row.name, path=req.path, bytes=size)

    async def h_import(self, ctx: Context, req: ImportRequest) -> AgentInfo:
        return await import_agent(self.agents, Path(req.path), req.name, force=req.force, hosts=self.hosts)

    async def h_history(self, ctx: Context, req: AgentHistoryRequest) -> HistoryReply:
        """An agent's events, read-only from its events.sqlite wherever it runs (its harness does not answer)."""
        return await hostreads.read_history(self.hosts, req)

    async def h_turn_stats(self, ctx: Context, req: TurnStatsRequest) -> TurnStatsReply:
        return await hostreads.read_turn_stats(self.hosts, req)

    async def h_s_create(self, ctx: Context, req: SessionCreate) -> SessionInfo:
        return await self.sessions.create(req.task, req.priority, req.metadata, req.host)

    async def h_s_start(self, ctx: Context, req: SessionRef) -> StatusReply:
        return await self.sessions.start(req.session_id, req.args)

    async def h_s_status(self, ctx: Context, req: SessionRef) -> StatusReply:
        return await self.sessions.status(req.session_id)

    async def h_s_get(self, ctx: Context, req: SessionRef) -> SessionInfo:
        return await self.sessions.get(req.session_id)

    async def h_s_list(self, ctx: Context, req: Empty) -> SessionList:
        return await self.sessions.list()

    async def h_s_output(self, ctx: Context, req: SessionRef) -> PathReply:
        return PathReply(path=(await self.sessions.get(req.session_id)).output_dir)

    async def h_s_log(self, ctx: Context, req: SessionRef) -> PathReply:
        return PathReply(path=(await self.sessions.get(req.session_id)).log_file)

    async def h_s_cleanup(self, ctx: Context, req: SessionCleanup) -> CleanupReply:
        return await self.sessions.cleanup(req.max_age_hours, req.remove_outputs)


async def import_agent(agents: Lifecycle, path: Path, name: str | None, *, force: bool = False,
                       hosts: Hosts | None = None) -> AgentInfo:
    if not path.is_absolute() or not await asyncio.to_thread(path.is_file):
        raise HiveError("not_found", f"no archive at {path} (an absolute path on the deployer host)")
    layout = agents.layout
    # validated and unpacked beside HIVE_HOME's agents first: a refused archive changes nothing
    staged = await asyncio.to_thread(archive.stage, layout, path)
    try:
        manifest = staged.manifest
        name = check_name(name or manifest["name"], new=True)
        exists = await agents.store.agent(name) is not None or layout.agent_dir(name).exists() or \
            layout.applied(name).exists()
        if exists and not force:
            raise HiveError("conflict", f"agent {name} already exists here (use force to replace it)")
        async with agents.transition(name, "importing", "import"):
            if exists:
                await agents.procs.stop(name, timeout=agents.opts.stop_timeout)
                if hosts is not None:  # it lived on an agent host: the import lives on this one
                    await hostreads.forget_remote(hosts, name)
                await asyncio.to_thread(archive.remove_agent_files, layout, name)
                await agents.store.delete_agent(name)
            await asyncio.to_thread(archive.install, layout, staged, name)
            src = manifest.get("agent") or {}
            now = time.time()
            row = AgentRow(name=name, state="stopped", desired="stopped", runtime=agents.runtime.kind,
                           created_at=now, since=now, deployed_tag=src.get("deployed_tag"),
                           deployed_sha=src.get("deployed_sha"))
            await agents.store.save(row)
            await agents.write_meta(f"import {name} {row.deployed_tag} {(row.deployed_sha or '')[:12]}")
            await agents._changed(row, f"[hive-deployer] imported as {name} from {manifest['name']}")
    finally:
        await asyncio.to_thread(staged.discard)
    return await agents.info(await agents.row(name), sizes=True)


async def build(transport: Transport, settings: Settings, metrics_url: str) -> DeployerService:
    return DeployerService(transport, settings, metrics_url=metrics_url)
