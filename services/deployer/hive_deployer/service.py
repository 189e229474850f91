"""The NATS micro layer of hive-deployer."""

from __future__ import annotations

from typing import Any

from hivewire import subjects
from hivewire.service import Context, Endpoint, MicroService
from hivewire.settings import Settings
from hivewire.transport import Transport
from hivewire.wire.common import Empty
from hivewire.wire.deployer import AgentList


class DeployerService(MicroService):
    name = "hive-deployer"
    description = "Hive deployer"

    def __init__(self, transport: Transport, settings: Settings, *, metrics_url: str = "") -> None:
        super().__init__(transport, metrics_url=metrics_url)
        self.settings = settings

    def endpoints(self) -> list[Endpoint[Any]]:
        return [Endpoint("list", subjects.deployer("list"), Empty, self.list_agents)]

    async def list_agents(self, ctx: Context, req: Empty) -> AgentList:
        return AgentList(agents=[])


async def build(transport: Transport, settings: Settings, metrics_url: str) -> DeployerService:
    return DeployerService(transport, settings, metrics_url=metrics_url)
