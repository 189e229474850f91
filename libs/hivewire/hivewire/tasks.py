"""Stopping background tasks so that a stop always ends."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

log = structlog.get_logger("hivewire.tasks")


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None, retry_s: float = 0.5) -> None:
    """Cancel `tasks` and wait until each has ended, cancelling again any still running
    after `retry_s` (logged once per retry).

    Why again: on Python < 3.12 `asyncio.wait_for` returns its result instead of raising
    CancelledError when the result arrives in the same loop pass as the cancel
    (python/cpython#86296). A loop that made a NATS request through it then carries on
    as if never cancelled, and one cancel followed by a gather waits forever: the
    deployer's broker bridge hung a CI run that way, until pytest's 300 s timeout."""
    mine = [t for t in tasks if t is not None]
    pending = {t for t in mine if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=retry_s)
        if pending:
            log.warning("cancel_ignored", tasks=sorted(t.get_name() for t in pending), retry_s=retry_s)
    await asyncio.gather(*mine, return_exceptions=True)  # ended: collects their outcomes, so none is logged
