"""Helpers shared by the API controllers."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import msgspec
import structlog

from hive_dashboard.metrics import ACTIONS
from hive_dashboard.schemas import ActionResult
from hivewire.errors import HiveError

log = structlog.get_logger("hive_dashboard.actions")


async def act(kind: str, call: Awaitable[Any]) -> ActionResult:
    """Run one operator action, counting it by kind and outcome."""
    try:
        result = await call
    except HiveError as err:
        ACTIONS.labels(kind, err.code).inc()
        log.warning("action_failed", kind=kind, code=err.code, message=err.message)
        raise
    ACTIONS.labels(kind, "ok").inc()
    log.info("action", kind=kind)
    if isinstance(result, msgspec.Struct):
        result = msgspec.to_builtins(result)
    return ActionResult(kind=kind, result=result if isinstance(result, dict) else {})
