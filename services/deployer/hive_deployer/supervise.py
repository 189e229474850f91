"""Agent processes: start one in its runtime, stop it, and notice when it dies.

`Procs` knows nothing about lifecycle verbs: it starts a `Launch`, records
whether a stop was on purpose, and calls `on_exit(name, rc, reason)` when a
process ends without being asked to.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from hive_deployer.pool import HarnessPool, PoolProc
from hive_deployer.runtimes import Launch, Runtime
from hivewire.errors import HiveError
from hivewire.procs import die_with_parent

log = structlog.get_logger("hive_deployer.supervise")

OnExit = Callable[[str, int | None, str], Awaitable[None]]
OnStopped = Callable[[str], Awaitable[None]]


@dataclass
class Running:
    launch: Launch
    proc: asyncio.subprocess.Process | PoolProc
    started: float
    rev: str | None = None
    stopping: bool = False
    crash_reason: str | None = None
    last_presence: float = 0.0
    instance: str | None = None
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)


class Procs:
    def __init__(self, runtime: Runtime, log_dir: Path, on_exit: OnExit, on_stopped: OnStopped | None = None,
                 pool: HarnessPool | None = None) -> None:
        self.runtime = runtime
        self.pool = pool  # agents' harnesses in one pool process (hive_deployer.pool), else one process each
        self.log_dir = log_dir
        self.on_exit = on_exit
        self.on_stopped = on_stopped  # after every stop on purpose (also of a process that already ended)
        self.running: dict[str, Running] = {}

    def pid(self, name: str) -> int | None:
        r = self.running.get(name)
        return r.proc.pid if r and r.proc.returncode is None else None

    async def _run(self, argv: list[str], env: dict[str, str], logf: Path) -> None:
        with open(logf, "ab") as out:
            proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT,
                                                        stdin=asyncio.subprocess.DEVNULL)
        rc = await proc.wait()
        if rc != 0:
            raise RuntimeError(f"{argv[0]} {argv[1] if len(argv) > 1 else ''} exited {rc}")

    async def start(self, launch: Launch, rev: str | None = None) -> Running:
        """Start `launch` in the runtime; raises if it cannot start or dies at once."""
        if self.pid(launch.name):
            raise RuntimeError(f"{launch.name} is already running")
        why = await asyncio.to_thread(self.runtime.check)
        if why is not None:  # fail closed: never a silent fallback to something weaker
            raise HiveError("unavailable", f"cannot start {launch.name} in the {self.runtime.kind} runtime: {why}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        logf = self.log_dir / f"{launch.name}.log"
        env = self.runtime.env(launch)
        for cmd in self.runtime.prepare(launch):
            await self._run(cmd, env, logf)
        if self.pool is not None:
            with open(logf, "ab") as out:
                out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} start in the harness pool "
                          f"({self.runtime.kind}; its log: harness-pool.log)\n".encode())
            member = await self.pool.start(launch)
            return self._track(launch, member, rev)
        argv = self.runtime.argv(launch)
        with open(logf, "ab") as out:
            out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} start {argv[0]} "
                      f"({self.runtime.kind})\n".encode())
            out.flush()
            # Spawned from the event loop thread: PDEATHSIG follows the deployer itself.
            proc = await asyncio.create_subprocess_exec(
                *argv, env=env, cwd=str(launch.cwd), stdin=asyncio.subprocess.DEVNULL, stdout=out,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent,
            )
        return self._track(launch, proc, rev)

    def _track(self, launch: Launch, proc: asyncio.subprocess.Process | PoolProc, rev: str | None) -> Running:
        r = Running(launch, proc, time.monotonic(), rev=rev)
        self.running[launch.name] = r
        r.watcher = asyncio.create_task(self._watch(launch.name, r), name=f"watch-{launch.name}")
        return r

    async def _watch(self, name: str, r: Running) -> None:
        rc = await r.proc.wait()
        if self.running.get(name) is r:
            del self.running[name]
        if r.stopping:
            return
        pooled = r.proc.reason if isinstance(r.proc, PoolProc) else None
        reason = r.crash_reason or pooled or f"process exited with code {rc}"
        log.warning("agent_exited", agent=name, rc=rc, reason=reason)
        try:
            await self.on_exit(name, rc, reason)
        except Exception:
            log.exception("on_exit_failed", agent=name)

    async def stop(self, name: str, *, timeout: float = 8.0, hard: bool = False) -> int | None:
        """Stop on purpose: SIGTERM the process group (SIGKILL after `timeout`, or at once if `hard`)."""
        r = self.running.get(name)
        if r is None:
            await self._stopped(name)
            return None
        r.stopping = True
        if isinstance(r.proc, PoolProc) and self.pool is not None:
            prc = await self.pool.stop(name, r.proc, timeout, hard)
            if r.watcher:
                await asyncio.gather(r.watcher, return_exceptions=True)
            self.running.pop(name, None)
            await self._stopped(name)
            return prc
        env = self.runtime.env(r.launch)
        for cmd in self.runtime.stop_commands(r.launch):
            try:
                await asyncio.wait_for(self._run(cmd, env, self.log_dir / f"{name}.log"), timeout)
            except Exception as exc:
                log.warning("runtime_stop_failed", agent=name, error=str(exc))
        _killpg(r.proc.pid, signal.SIGKILL if hard else signal.SIGTERM)
        try:
            rc = await asyncio.wait_for(r.proc.wait(), timeout)
        except TimeoutError:
            log.warning("agent_stop_timeout", agent=name, pid=r.proc.pid)
            _killpg(r.proc.pid, signal.SIGKILL)
            rc = await r.proc.wait()
        if r.watcher:
            await asyncio.gather(r.watcher, return_exceptions=True)
        self.running.pop(name, None)
        await self._stopped(name)
        return rc

    async def _stopped(self, name: str) -> None:
        if self.on_stopped is not None:
            try:
                await self.on_stopped(name)
            except Exception:
                log.exception("on_stopped_failed", agent=name)

    def fail(self, name: str, reason: str) -> None:
        """Declare a live process dead (stale presence): kill it, the watcher reports the crash."""
        r = self.running.get(name)
        if r is None or r.stopping:
            return
        r.crash_reason = reason
        if isinstance(r.proc, PoolProc) and self.pool is not None:
            self.pool.kill(name, reason)  # that agent only; the others in the pool go on
            return
        _killpg(r.proc.pid, signal.SIGKILL)

    async def stop_all(self, timeout: float = 8.0) -> None:
        await asyncio.gather(*(self.stop(n, timeout=timeout) for n in list(self.running)), return_exceptions=True)
        if self.pool is not None:
            await self.pool.close(timeout)


def _killpg(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
