"""The NATS micro layer of hive-backup: `hive.backup.run|list|verify|restore|prune`."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import structlog

from hive_backup import remote
from hive_backup.config import Config, load_config
from hive_backup.ops import Backups
from hive_backup.schedule import Clock, RealClock, Scheduler
from hivewire.errors import HiveError
from hivewire.nats_transport import NatsTransport
from hivewire.service import Context, Endpoint, HiveClient, MicroService
from hivewire.settings import Settings
from hivewire.tasks import cancel_and_wait
from hivewire.transport import Transport
from hivewire.wire import ops
from hivewire.wire.backup import (
    BackupDone,
    ListRequest,
    Progress,
    PruneReply,
    PruneRequest,
    RestoreReply,
    RestoreRequest,
    RunRequest,
    Snapshot,
    SnapshotList,
    VerifyReply,
    VerifyRequest,
)
from hivewire.wire.op import Op

log = structlog.get_logger("hive_backup.service")
T = TypeVar("T")


class BackupService(MicroService):
    name = "hive-backup"
    description = "Hive backup: online snapshots, encrypted secrets, verify, restore, retention"

    def __init__(self, transport: Transport, settings: Settings, *, metrics_url: str = "",
                 config: Config | None = None, clock: Clock | None = None) -> None:
        super().__init__(transport, metrics_url=metrics_url)
        self.settings = settings
        self.config = config or load_config(settings.home)
        self.clock = clock or RealClock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._current = ""
        self.backups = Backups(settings.home, self.config, nc=getattr(transport, "nc", None),
                               progress=self._on_progress)
        if isinstance(transport, NatsTransport):  # other hosts' agents, over NATS (not on a test's memory bus)
            client = HiveClient(transport, timeout=30.0)
            self.backups.pull_remote = lambda: remote.pull(client, settings.home)
        self.scheduler: Scheduler | None = None
        self._task: asyncio.Task[None] | None = None

    def endpoints(self) -> list[Endpoint[Any]]:
        return [
            Endpoint.of(ops.BACKUP_RUN, self.run),
            Endpoint.of(ops.BACKUP_LIST, self.list_snapshots),
            Endpoint.of(ops.BACKUP_VERIFY, self.verify),
            Endpoint.of(ops.BACKUP_RESTORE, self.restore),
            Endpoint.of(ops.BACKUP_PRUNE, self.prune),
        ]

    async def on_start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.backups.refresh_gauges()
        if self.config.scheduler.enabled:
            self.scheduler = Scheduler(self.config.schedule, self._scheduled, self.clock,
                                       last_success=self.backups.last_success(),
                                       catch_up=self.config.scheduler.catch_up)
            self._task = asyncio.create_task(self.scheduler.run_forever(), name="backup-scheduler")

    async def on_stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    # --- helpers ------------------------------------------------------------------------
    def _on_progress(self, step: str, done: int, total: int, item: str) -> None:
        """Called from the worker thread; publishes `hive.backup.progress`."""
        if self._loop is None or self._loop.is_closed():
            return
        msg = Progress(snapshot_id=self._current, step=step, done=done, total=total, item=item)
        self._loop.call_soon_threadsafe(
            lambda: asyncio.ensure_future(self._publish_quietly(ops.BACKUP_PROGRESS, msg))
        )

    async def _publish_quietly(self, event: Op[T, None], obj: T) -> None:
        try:
            await self.emit(event, obj)
        except Exception as exc:  # progress is best effort
            log.warning("backup_publish_failed", subject=event.subject, error=str(exc))

    async def _done(self, done: BackupDone) -> None:
        await self._publish_quietly(ops.BACKUP_DONE, done)

    async def _scheduled(self, classes: list[str]) -> None:
        await self.backups.run(classes, on_done=self._done)

    # --- endpoints ------------------------------------------------------------------------
    async def run(self, ctx: Context, req: RunRequest) -> Snapshot:
        return await self.backups.run(req.classes, on_done=self._done)

    async def list_snapshots(self, ctx: Context, req: ListRequest) -> SnapshotList:
        return SnapshotList(snapshots=await self.backups.list(req.target))

    async def verify(self, ctx: Context, req: VerifyRequest) -> VerifyReply:
        return await self.backups.verify(req.snapshot_id, req.target, req.identity)

    async def restore(self, ctx: Context, req: RestoreRequest) -> RestoreReply:
        if req.in_place:
            raise HiveError("conflict", "in-place restore needs Hive stopped: stop it and run "
                            "`hive backup restore --in-place` on the host")
        return await self.backups.restore(req.snapshot_id, req.dest, identity=req.identity, only=req.only,
                                          target=req.target)

    async def prune(self, ctx: Context, req: PruneRequest) -> PruneReply:
        return await self.backups.prune(req.target, req.dry_run)


async def build(transport: Transport, settings: Settings, metrics_url: str) -> BackupService:
    return BackupService(transport, settings, metrics_url=metrics_url)
