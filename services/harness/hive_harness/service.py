"""The NATS micro layer of one agent's harness."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

from hivewire import subjects
from hivewire.errors import HiveError
from hivewire.names import validate_agent_name
from hivewire.service import Context, Endpoint, MicroService
from hivewire.settings import Settings
from hivewire.transport import Transport
from hivewire.wire.agent import AgentState, Presence
from hivewire.wire.common import Empty

HEARTBEAT_S = 3.0


class HarnessService(MicroService):
    name = "hive-harness"
    description = "Hive agent harness"

    def __init__(self, transport: Transport, settings: Settings, agent: str, *, metrics_url: str = "") -> None:
        super().__init__(transport, metrics_url=metrics_url)
        self.settings = settings
        self.agent = validate_agent_name(agent, allow_reserved=True)
        self.instance = uuid.uuid4().hex[:12]
        self.state_since = time.time()
        self._beat: asyncio.Task[None] | None = None

    def metadata(self) -> dict[str, str]:
        return {**super().metadata(), "agent": self.agent, "instance": self.instance}

    def endpoints(self) -> list[Endpoint[Any]]:
        return [Endpoint("state", subjects.ctl(self.agent, "state"), Empty, self.state)]

    async def state(self, ctx: Context, req: Empty) -> AgentState:
        return AgentState(
            status="online", turn_state="idle", turn_state_since=self.state_since, model="haiku",
            context_window=self.settings.context_window or 200_000,
        )

    async def on_start(self) -> None:
        self._beat = asyncio.create_task(self._heartbeat())

    async def on_stop(self) -> None:
        if self._beat:
            self._beat.cancel()
            await asyncio.gather(self._beat, return_exceptions=True)
        await self.publish(
            subjects.presence(self.agent),
            Presence(state="offline", since=time.time(), instance=self.instance, reason="stopped", ts=time.time()),
        )

    async def _heartbeat(self) -> None:
        while True:
            await self.publish(
                subjects.presence(self.agent),
                Presence(state="idle", since=self.state_since, instance=self.instance, ts=time.time()),
            )
            await asyncio.sleep(HEARTBEAT_S)


async def build(transport: Transport, settings: Settings, metrics_url: str) -> HarnessService:
    agent = os.environ.get("HIVE_AGENT", "")
    if not agent:
        raise HiveError("bad_request", "HIVE_AGENT must name the agent this harness runs")
    return HarnessService(transport, settings, agent, metrics_url=metrics_url)
