"""The cost ledger's JetStream stream in tests: the session-wide nats-server keeps JetStream state
between tests, so a test that runs a real broker's ledger starts (and ends) with no stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from hivewire import subjects


async def drop_ledger_stream(nc: Any) -> None:
    try:
        await nc.jetstream().delete_stream(subjects.LEDGER_STREAM)
    except Exception:  # not there
        pass


@asynccontextmanager
async def fresh_ledger_stream(nc: Any) -> AsyncIterator[None]:
    await drop_ledger_stream(nc)
    try:
        yield
    finally:
        await drop_ledger_stream(nc)
