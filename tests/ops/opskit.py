"""Helpers shared by the operations tests."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from hivewire.nats_transport import flush


class Conn:
    """A raw nats-py client logged in as one Hive user, collecting async errors."""

    def __init__(self, nc: Client, errors: list[str]) -> None:
        self.nc = nc
        self.errors = errors

    async def violations(self, wait: float = 0.3) -> list[str]:
        await flush(self.nc)
        await asyncio.sleep(wait)
        return [e for e in self.errors if "permissions violation" in e.lower()]



ConnectAs = Callable[[str], Awaitable[Conn]]


def collector() -> tuple[list[str], Callable[[Msg], Awaitable[None]]]:
    """A list of received subjects and the coroutine callback that fills it."""
    got: list[str] = []

    async def cb(msg: Msg) -> None:
        got.append(msg.subject)

    return got, cb


async def true(v: bool) -> bool:
    """An async predicate for `support.procs.wait_for`."""
    return v


async def refused(url: str, **opts: object) -> str:
    """Connect must fail (bad or revoked credentials); returns the error text.

    nats-py leaves the socket of a refused connect for the garbage collector
    (a ResourceWarning that pytest turns into an error): collect it here,
    with that warning ignored, so the leak stays nats-py's and not a failure.
    """
    try:
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, **opts)  # type: ignore[arg-type]
    except Exception as exc:  # the exact class varies with the failure
        err = str(exc) or type(exc).__name__
    else:
        await nc.close()
        raise AssertionError(f"connect with {sorted(opts)} succeeded")
    collect_leaks()
    return err


def collect_leaks() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
