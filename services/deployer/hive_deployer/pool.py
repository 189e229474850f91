"""The deployer's side of the harness pool (`hive_harness.pool`, issue 26 phase 2).

With `HIVE_HARNESS_POOL=1` (the default) and a host runtime (`bwrap`,
`process`), `Procs` starts agents' harnesses inside one pool process instead
of one process each: an idle agent then costs its share of one interpreter
instead of a whole one (bench/harness_rss). Every agent keeps its own NATS
identity, run dir, MCP socket, egress proxy and sandbox; only the harness
process is shared.

`HarnessPool` starts the pool on first use (a child like any harness: own
process group, dies with its parent, log `logs/agents/harness-pool.log`),
asks it over stdin to start, stop or kill one agent, and turns its `exited`
reports into the ends of `PoolProc`s, which `Procs` watches exactly like
processes: an agent that fails inside the pool is a crash of that agent
only. When the pool process itself dies, every agent in it ends with
`harness pool (pid N) exited with code C` and the crash watch restarts each
(a new pool is started for them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import structlog

from hive_deployer import metrics
from hive_deployer.runtimes import Launch, Runtime
from hivewire.procs import die_with_parent

log = structlog.get_logger("hive_deployer.pool")

POOL_RUNTIMES = ("bwrap", "process")
# Never in the pool's own environment: they make a harness one agent's (hive_harness.pool.PER_AGENT).
PER_AGENT = frozenset({
    "HIVE_AGENT", "HIVE_EVENTS_DB", "HIVE_MODEL_FILE", "HIVE_AGENT_CONFIG_ENV", "HIVE_DEPLOYED_REV",
    "CLAUDE_CONFIG_DIR", "HIVE_NATS_CREDS", "HIVE_NATS_USER", "HIVE_NATS_PASSWORD", "HIVE_NATS_INBOX_PREFIX",
})


class PoolProc:
    """One agent in the pool, as `Procs` sees a process: `pid` (the pool's), `returncode`, `wait()`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.reason: str | None = None
        self._done = asyncio.Event()

    def finish(self, rc: int | None, reason: str | None = None) -> None:
        if not self._done.is_set():
            self.returncode = -9 if rc is None else rc
            self.reason = reason
            self._done.set()

    async def wait(self) -> int:
        await self._done.wait()
        return self.returncode if self.returncode is not None else -9


def for_runtime(runtime: Runtime, log_dir: Path, *, harness_cmd: str, flag: bool,
                metrics_addr: str = "127.0.0.1:0") -> HarnessPool | None:
    """A pool when asked for (`Options.harness_pool`), for a host runtime running the stock harness."""
    if flag and not harness_cmd and runtime.kind in POOL_RUNTIMES:
        return HarnessPool(runtime, log_dir, metrics_addr=metrics_addr)
    return None


class HarnessPool:
    def __init__(self, runtime: Runtime, log_dir: Path, argv: list[str] | None = None,
                 metrics_addr: str = "127.0.0.1:0") -> None:
        self.runtime = runtime
        self.log_dir = log_dir
        self.metrics_addr = metrics_addr  # where the pool's /metrics listens (host:port)
        self.metrics_url = ""  # what the running pool reports with each start
        self.argv = argv or [sys.executable, "-m", "hive_harness.pool"]
        self.proc: asyncio.subprocess.Process | None = None
        self.members: dict[str, PoolProc] = {}
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    async def _ensure(self, launch: Launch) -> asyncio.subprocess.Process:
        async with self._lock:
            if self.proc is not None and self.proc.returncode is None:
                return self.proc
            env = {k: v for k, v in self.runtime.env(launch).items() if k not in PER_AGENT}
            env["HIVE_METRICS_ADDR"] = self.metrics_addr
            self.metrics_url = ""
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with open(self.log_dir / "harness-pool.log", "ab") as out:
                out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} start harness pool "
                          f"({self.runtime.kind})\n".encode())
                out.flush()
                proc = await asyncio.create_subprocess_exec(
                    *self.argv, env=env, cwd=str(self.log_dir), stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE, stderr=out, start_new_session=True, preexec_fn=die_with_parent,
                )
            self.proc = proc
            self._tasks = [asyncio.create_task(self._read(proc), name="harness-pool-read")]
            log.info("harness_pool_started", pid=proc.pid)
            return proc

    async def _send(self, proc: asyncio.subprocess.Process, cmd: dict[str, Any]) -> None:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        await proc.stdin.drain()

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            name, kind = str(ev.get("agent", "")), ev.get("event")
            if kind == "started" and isinstance(ev.get("metrics_url"), str):
                self.metrics_url = ev["metrics_url"]
            if kind in ("started", "start_failed"):
                fut = self._replies.pop(name, None)
                if fut is not None and not fut.done():
                    fut.set_result(ev)
            elif kind == "exited":
                p = self.members.pop(name, None)
                if p is not None:
                    p.finish(ev.get("rc"), ev.get("reason"))
        rc = await proc.wait()
        why = f"harness pool (pid {proc.pid}) exited with code {rc}"
        if self.members:
            metrics.FAILURES.labels("harness_pool").inc()
            log.warning("harness_pool_exited", pid=proc.pid, rc=rc, agents=sorted(self.members))
        for name, p in list(self.members.items()):  # every agent in it ended with it
            self.members.pop(name, None)
            p.finish(rc, why)
        for fut in self._replies.values():
            if not fut.done():
                fut.set_result({"event": "start_failed", "error": why})
        self._replies.clear()

    async def start(self, launch: Launch) -> PoolProc:
        proc = await self._ensure(launch)
        member = PoolProc(proc.pid)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[launch.name] = fut
        self.members[launch.name] = member
        env = {k: v for k, v in launch.env.items()}
        try:
            await self._send(proc, {"op": "start", "agent": launch.name, "env": env})
            ev = await asyncio.wait_for(fut, 30.0)
        except (OSError, TimeoutError) as exc:
            self.members.pop(launch.name, None)
            raise RuntimeError(f"harness pool did not take {launch.name}: {exc!r}") from exc
        finally:
            self._replies.pop(launch.name, None)
        if ev.get("event") != "started":
            self.members.pop(launch.name, None)
            raise RuntimeError(f"harness pool refused {launch.name}: {ev.get('error')}")
        return member

    async def stop(self, name: str, member: PoolProc, timeout: float, hard: bool) -> int | None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            member.finish(None, "harness pool gone")
            return member.returncode
        with contextlib.suppress(OSError):
            await self._send(proc, {"op": "kill", "agent": name, "reason": "stopped"} if hard
                             else {"op": "stop", "agent": name, "timeout": timeout})
        try:
            return await asyncio.wait_for(member.wait(), timeout + 5.0)
        except TimeoutError:  # the pool itself no longer answers: only now is everyone in it at stake
            metrics.FAILURES.labels("harness_pool").inc()
            log.error("harness_pool_unresponsive", agent=name, pid=proc.pid)
            _killpg(proc.pid, signal.SIGKILL)
            return await member.wait()

    def kill(self, name: str, reason: str) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        task = asyncio.get_running_loop().create_task(self._send(proc, {"op": "kill", "agent": name,
                                                                          "reason": reason}))
        self._tasks.append(task)

    async def close(self, timeout: float = 10.0) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()  # EOF: the pool stops what is left and exits
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                _killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []


def _killpg(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
