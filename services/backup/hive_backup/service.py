"""The NATS micro layer of hive-backup."""

from __future__ import annotations

from typing import Any

from hivewire import subjects
from hivewire.service import Context, Endpoint, MicroService
from hivewire.settings import Settings
from hivewire.transport import Transport
from hivewire.wire.backup import SnapshotList
from hivewire.wire.common import Empty


class BackupService(MicroService):
    name = "hive-backup"
    description = "Hive backup"

    def __init__(self, transport: Transport, settings: Settings, *, metrics_url: str = "") -> None:
        super().__init__(transport, metrics_url=metrics_url)
        self.settings = settings

    def endpoints(self) -> list[Endpoint[Any]]:
        return [Endpoint("list", subjects.backup("list"), Empty, self.list_snapshots)]

    async def list_snapshots(self, ctx: Context, req: Empty) -> SnapshotList:
        return SnapshotList(snapshots=[])


async def build(transport: Transport, settings: Settings, metrics_url: str) -> BackupService:
    return BackupService(transport, settings, metrics_url=metrics_url)
