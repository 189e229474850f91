"""Every NATS request the dashboard makes: an op of the contract through `HiveClient.request`."""

from __future__ import annotations

from typing import TypeVar

import structlog

from hive_dashboard.config import DashboardConfig
from hive_dashboard.metrics import UPSTREAM_ERRORS
from hivewire.errors import HiveError
from hivewire.service import HiveClient
from hivewire.transport import Transport
from hivewire.wire.op import Op

log = structlog.get_logger("hive_dashboard.upstream")
Req = TypeVar("Req")
Rep = TypeVar("Rep")


class Upstream:
    def __init__(self, transport: Transport | None, cfg: DashboardConfig) -> None:
        self.cfg = cfg
        self.client = HiveClient(transport, cfg.call_timeout_s) if transport is not None else None

    async def request(self, op: Op[Req, Rep], req: Req, *, timeout: float | None = None, **params: str) -> Rep:
        """`op`'s reply (its type); an error reply is counted by subject family, logged, and raised."""
        family = ".".join(op.subject.split(".")[:2])
        if self.client is None:
            UPSTREAM_ERRORS.labels(family, "unavailable").inc()
            raise HiveError("unavailable", "the dashboard is not connected to NATS")
        try:
            return await self.client.request(op, req, timeout=timeout, **params)
        except HiveError as err:
            UPSTREAM_ERRORS.labels(family, err.code).inc()
            log.warning("upstream_error", subject=op.subject, params=params, code=err.code, message=err.message)
            raise

    async def agent_request(self, op: Op[Req, Rep], req: Req, *, agent: str, timeout: float | None = None) -> Rep:
        """A request to one agent's harness (`ctl.*`): no responder means the agent is offline."""
        try:
            return await self.request(op, req, timeout=timeout, agent=agent)
        except HiveError as err:
            if err.code == "unavailable":
                raise HiveError("conflict", f"agent is offline ({err.message})") from None
            raise
