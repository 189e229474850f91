"""The NATS micro layer of hive-broker."""

from __future__ import annotations

from typing import Any

from hivewire import subjects
from hivewire.names import validate_agent_name
from hivewire.service import Context, Endpoint, MicroService
from hivewire.settings import Settings
from hivewire.transport import Transport
from hivewire.wire.broker import CountsReply
from hivewire.wire.common import Empty


class BrokerService(MicroService):
    name = "hive-broker"
    description = "Hive broker"

    def __init__(self, transport: Transport, settings: Settings, *, metrics_url: str = "") -> None:
        super().__init__(transport, metrics_url=metrics_url)
        self.settings = settings

    def endpoints(self) -> list[Endpoint[Any]]:
        return [Endpoint("counts", subjects.broker_pattern("counts"), Empty, self.counts)]

    async def counts(self, ctx: Context, req: Empty) -> CountsReply:
        validate_agent_name(ctx.token(2), allow_reserved=True)
        return CountsReply(unread=0, open_questions=0, pending_reminders=0)


async def build(transport: Transport, settings: Settings, metrics_url: str) -> BrokerService:
    return BrokerService(transport, settings, metrics_url=metrics_url)
