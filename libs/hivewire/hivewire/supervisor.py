"""`hive up`'s supervisor: start children, restart the ones that die, stop all.

Children run in their own sessions (so a terminal's Ctrl-C reaches only
`hive up`, which then stops them in order) and with a parent-death signal
(so a `kill -9` of `hive up` takes them down too).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from hivewire.procs import die_with_parent

log = structlog.get_logger("hivewire.supervisor")


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Child:
    spec: ChildSpec
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0


class Supervisor:
    def __init__(
        self, specs: list[ChildSpec], log_dir: Path, *, max_backoff: float = 30.0, healthy_after: float = 30.0
    ) -> None:
        self.children = {s.name: Child(s) for s in specs}
        self.log_dir = log_dir
        self.max_backoff = max_backoff
        self.healthy_after = healthy_after
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for child in self.children.values():
            await self._spawn(child)
            self._tasks.append(asyncio.create_task(self._watch(child), name=f"watch-{child.spec.name}"))

    async def _spawn(self, child: Child) -> None:
        logf = open(self.log_dir / f"{child.spec.name}.log", "ab")
        try:
            child.proc = await asyncio.create_subprocess_exec(
                *child.spec.argv,
                env={**os.environ, **child.spec.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logf,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        finally:
            logf.close()
        child.started_at = time.monotonic()
        log.info("child_started", child=child.spec.name, pid=child.proc.pid, restarts=child.restarts)

    async def _watch(self, child: Child) -> None:
        backoff = 0.5
        while True:
            assert child.proc is not None
            rc = await child.proc.wait()
            if self._stopping:
                return
            ran = time.monotonic() - child.started_at
            if ran > self.healthy_after:
                backoff = 0.5
            log.warning("child_exited", child=child.spec.name, rc=rc, ran_s=round(ran, 1), restart_in_s=backoff)
            await asyncio.sleep(backoff)
            if self._stopping:
                return
            backoff = min(backoff * 2, self.max_backoff)
            child.restarts += 1
            await self._spawn(child)

    async def stop(self, timeout: float = 8.0, last: str = "nats") -> None:
        """SIGTERM services (then `last`, NATS, so they can drain); SIGKILL leftovers."""
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        deadline = time.monotonic() + timeout
        first = [n for n in self.children if n != last]
        await self._terminate(first, deadline - (2.0 if last in self.children else 0.0))
        if last in self.children:
            await self._terminate([last], deadline)
        log.info("all_stopped")

    async def _terminate(self, names: list[str], deadline: float) -> None:
        procs = [(n, c.proc) for n in names if (c := self.children[n]).proc is not None]
        for _, proc in procs:
            if proc is not None and proc.returncode is None:
                _killpg(proc.pid, signal.SIGTERM)
        for name, proc in procs:
            if proc is None or proc.returncode is not None:
                continue
            try:
                await asyncio.wait_for(proc.wait(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                log.warning("child_kill", child=name, pid=proc.pid)
                _killpg(proc.pid, signal.SIGKILL)
                await proc.wait()


def _killpg(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
