"""Every NATS request the dashboard makes, through `HiveClient` and the wire structs."""

from __future__ import annotations

from typing import Any, TypeVar

import structlog

from hive_dashboard.config import DashboardConfig
from hive_dashboard.metrics import UPSTREAM_ERRORS
from hivewire.errors import HiveError
from hivewire.service import HiveClient
from hivewire.transport import Transport

log = structlog.get_logger("hive_dashboard.upstream")
T = TypeVar("T")
Json = dict[str, Any]


class Upstream:
    def __init__(self, transport: Transport | None, cfg: DashboardConfig) -> None:
        self.cfg = cfg
        self.client = HiveClient(transport, cfg.call_timeout_s) if transport is not None else None

    async def call(self, subject: str, req: Any, reply_type: type[T], timeout: float | None = None) -> T:
        family = ".".join(subject.split(".")[:2])
        if self.client is None:
            UPSTREAM_ERRORS.labels(family, "unavailable").inc()
            raise HiveError("unavailable", "the dashboard is not connected to NATS")
        try:
            return await self.client.call(subject, req, reply_type, timeout=timeout)
        except HiveError as err:
            UPSTREAM_ERRORS.labels(family, err.code).inc()
            log.warning("upstream_error", subject=subject, code=err.code, message=err.message)
            raise

    async def agent_call(self, subject: str, req: Any, reply_type: type[T], timeout: float | None = None) -> T:
        """A call to one agent's harness: no responder means the agent is offline."""
        try:
            return await self.call(subject, req, reply_type, timeout)
        except HiveError as err:
            if err.code == "unavailable":
                raise HiveError("conflict", f"agent is offline ({err.message})") from None
            raise
