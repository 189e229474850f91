"""Start Hive services for tests: in-process or as real subprocesses.

Tests stop only what they started, by pid / process group.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from hivewire.procs import die_with_parent, stop_process
from hivewire.runner import Builder
from hivewire.service import MicroService
from hivewire.settings import Settings
from hivewire.transport import Transport

T = TypeVar("T")


async def wait_for(pred: Callable[[], Awaitable[T]], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll an async predicate until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await pred()
            if last:
                return last
        except Exception as exc:  # keep polling through startup errors
            last = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


@asynccontextmanager
async def running(build: Builder, transport: Transport, settings: Settings) -> AsyncIterator[MicroService]:
    """Run a service in this process (fast; for most integration tests)."""
    svc = await build(transport, settings, "")
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


class ServiceProcess:
    """A service as a real child process (`python -m hive_<short>`)."""

    def __init__(self, short: str, env: dict[str, str], log_dir: Path) -> None:
        self.short = short
        self.env = env
        self.log_path = log_dir / f"{short}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"hive_{self.short}"],
                env={**os.environ, **self.env},
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(5)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        rc = stop_process(self.proc)
        self.proc = None
        return rc

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


async def ping_names(nc: Any, wait: float = 0.3, harnesses: tuple[str, ...] = ()) -> list[str]:
    """Names of every micro service answering `$SRV.PING`, plus the stand-alone harnesses of `harnesses`
    at their own `$SRV.PING.hive-harness.<agent>` (only a deployer relays the broadcast to its own)."""
    inbox = nc.new_inbox()
    names: list[str] = []

    async def on_msg(msg: Any) -> None:
        names.append(json.loads(msg.data)["name"])

    sub = await nc.subscribe(inbox, cb=on_msg)
    await nc.publish("$SRV.PING", b"", reply=inbox)
    for agent in harnesses:
        await nc.publish(f"$SRV.PING.hive-harness.{agent}", b"", reply=inbox)
    await asyncio.sleep(wait)
    await sub.unsubscribe()
    return names


def executable(path: Path, script: str) -> Path:
    """Write `script` to `path` and make it executable (a fake command for a test)."""
    path.write_text(script)
    path.chmod(path.stat().st_mode | 0o111)
    return path
