"""`python -m hive_harness.pool`: many agents' harnesses in one process (issue 26, phase 2).

One Python process per agent costs ~80 MB each (the interpreter, nats-py,
msgspec, sqlite, the MCP server's modules) although an idle agent does
nothing but heartbeat. The pool runs N `HarnessService`s in one asyncio loop,
each with everything that makes it that agent: its own NATS connection and
identity (`agent_<name>`), its own run dir with its MCP socket and egress
proxy, its own stores, sandbox and cgroup; every CLI turn still runs in its
own bubblewrap sandbox. What they share is the interpreter, the modules and
the pool's `/metrics` (aggregated over its agents).

The deployer (or `hive-agenthost`) runs it as a child and talks to it in JSON
lines: on stdin `{"op": "start", "agent", "env"}` (the agent's own
environment: what a one-process harness would get on top of the pool's),
`{"op": "stop", "agent", "timeout"}`, `{"op": "kill", "agent", "reason"}`;
on stdout `{"event": "started"|"start_failed"|"up"|"exited", "agent", ...}`
(`started` carries the pool's `metrics_url`, `exited` `rc` and `reason`; `asked` is true for a stop on
purpose).
Logs go to stderr, one JSON line each with `agent` bound.

Failure isolation: an agent whose start, service or turn loop fails exits
alone (`exited`, rc 1, the error) and the others go on. A stop is bounded: a
member that does not stop within its timeout is cancelled. What the pool
cannot isolate: a crash of the process itself (a segfault, the OOM killer)
or a member that blocks the event loop; then every agent in it ends and the
deployer's crash watch restarts each one (docs/harness.md, "Harness pool").
stdin closing (the deployer is gone) stops every agent and the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

import structlog

from hive_harness import metrics
from hive_harness.service import HarnessService, config_env
from hivewire import natsauth
from hivewire.logs import configure_logging
from hivewire.names import validate_agent_name
from hivewire.nats_transport import NatsTransport, connect_nats
from hivewire.runner import resolve_nats_url, start_metrics
from hivewire.settings import Settings, secure_home

log = structlog.get_logger("hive_harness.pool")

# Variables that make a harness one agent's: never in the pool's own environment, only in a
# member's (a pool that inherited one would hand it to every agent).
PER_AGENT = frozenset({
    "HIVE_AGENT", "HIVE_EVENTS_DB", "HIVE_MODEL_FILE", "HIVE_AGENT_CONFIG_ENV", "HIVE_DEPLOYED_REV",
    "CLAUDE_CONFIG_DIR", "HIVE_NATS_CREDS", "HIVE_NATS_USER", "HIVE_NATS_PASSWORD", "HIVE_NATS_INBOX_PREFIX",
})
STOP_S = 8.0


@dataclass
class Member:
    name: str
    env: dict[str, str]
    timeout: float = STOP_S
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    asked: bool = False
    reason: str = ""
    svc: HarnessService | None = None
    task: asyncio.Task[None] | None = None


class Pool:
    def __init__(self, emit: Any, metrics_url: str = "") -> None:
        self.emit = emit
        self.metrics_url = metrics_url
        self.members: dict[str, Member] = {}

    # --- verbs --------------------------------------------------------------------
    def start(self, name: str, env: dict[str, str]) -> None:
        name = validate_agent_name(name, allow_reserved=True)
        if name in self.members:
            raise RuntimeError(f"{name} is already running in this pool")
        m = Member(name, {k: str(v) for k, v in env.items()})
        self.members[name] = m
        m.task = asyncio.create_task(self._run(m), name=f"agent-{name}")

    def stop(self, name: str, timeout: float = STOP_S) -> bool:
        m = self.members.get(name)
        if m is None:
            return False
        m.asked, m.timeout = True, timeout
        m.stop.set()
        return True

    def kill(self, name: str, reason: str) -> bool:
        """Declared dead from outside (a stale heartbeat): stop it at once, report it as a crash."""
        m = self.members.get(name)
        if m is None:
            return False
        m.reason, m.timeout = reason or "killed", 2.0
        m.stop.set()
        return True

    async def stop_all(self) -> None:
        for name in list(self.members):
            self.stop(name)
        tasks = [m.task for m in self.members.values() if m.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_S + 4)

    # --- one member ------------------------------------------------------------------
    async def _run(self, m: Member) -> None:
        structlog.contextvars.bind_contextvars(agent=m.name)  # every line this member's tasks log says whose
        rc, reason = 0, "stopped"
        transport: NatsTransport | None = None
        try:
            own = {k: v for k, v in os.environ.items() if k not in PER_AGENT}
            env = {**own, **m.env, "HIVE_AGENT": m.name}
            settings = Settings.from_env(env)
            # Its own identity only: None (no auth) never falls back to anyone else's credentials.
            creds = natsauth.resolve_credentials(env)
            nc = await connect_nats(resolve_nats_url(settings), name="hive-harness",
                                    credentials=creds)
            transport = NatsTransport(nc)
            m.svc = HarnessService(transport, settings, m.name, metrics_url=self.metrics_url,
                                   agent_config_env=config_env(env))
            await m.svc.start()
            gc.freeze()  # as run_service does: what lives as long as the member stays out of full GC passes
            self.emit({"event": "up", "agent": m.name, "instance": m.svc.instance})
            stop = asyncio.create_task(m.stop.wait())
            watched = [stop, *m.svc._tasks]
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if stop not in done:  # the heartbeat or the turn loop ended by itself: this member failed
                t = next(iter(done))
                exc = t.exception() if not t.cancelled() else None
                rc, reason = 1, f"harness task {t.get_name()} ended: {exc!r}"
            elif m.reason:
                rc, reason = -9, m.reason
        except asyncio.CancelledError:
            rc, reason = -9, m.reason or "cancelled"
        except Exception as exc:
            rc, reason = 1, f"harness failed: {exc}"
            metrics.FAILURES.labels("pool_member").inc()
            log.exception("pool_member_failed", error=str(exc))
        finally:
            if m.svc is not None:
                try:
                    await asyncio.wait_for(m.svc.stop(), m.timeout)
                except (Exception, asyncio.CancelledError) as exc:  # bounded: one member never holds the pool
                    metrics.FAILURES.labels("pool_stop").inc()
                    log.warning("pool_member_stop_failed", error=repr(exc))
            if transport is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(transport.close(), 3.0)
            self.members.pop(m.name, None)
            log.info("pool_member_exited", rc=rc, reason=reason, asked=m.asked)
            self.emit({"event": "exited", "agent": m.name, "rc": rc, "reason": reason, "asked": m.asked})


# --- the process ------------------------------------------------------------------------
def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _handle(pool: Pool, line: bytes) -> None:
    try:
        cmd = json.loads(line)
        op, name = cmd.get("op"), str(cmd.get("agent", ""))
    except (ValueError, AttributeError):
        log.warning("pool_bad_command", line=line[:200].decode(errors="replace"))
        return
    try:
        if op == "start":
            pool.start(name, dict(cmd.get("env") or {}))
            _emit({"event": "started", "agent": name, "pid": os.getpid(), "metrics_url": pool.metrics_url})
        elif op == "stop":
            if not pool.stop(name, float(cmd.get("timeout") or STOP_S)):
                _emit({"event": "exited", "agent": name, "rc": None, "reason": "not running", "asked": True})
        elif op == "kill":
            if not pool.kill(name, str(cmd.get("reason") or "killed")):
                _emit({"event": "exited", "agent": name, "rc": None, "reason": "not running", "asked": True})
        else:
            log.warning("pool_unknown_op", op=op)
    except Exception as exc:
        metrics.FAILURES.labels("pool_command").inc()
        log.warning("pool_command_failed", op=op, agent=name, error=str(exc))
        if op == "start":
            _emit({"event": "start_failed", "agent": name, "error": str(exc)})


async def serve_pool() -> None:
    settings = Settings.from_env()
    metrics_url, server = start_metrics(settings, "harness")
    pool = Pool(_emit, metrics_url)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 22)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)

    async def read() -> None:
        while line := await reader.readline():
            if line.strip():
                await _handle(pool, line)
        done.set()  # stdin closed: whoever started the pool is gone

    reading = asyncio.create_task(read())
    log.info("pool_ready", pid=os.getpid(), metrics_url=metrics_url)
    await done.wait()
    reading.cancel()
    await pool.stop_all()
    server.shutdown()  # type: ignore[attr-defined]
    server.server_close()  # type: ignore[attr-defined]
    log.info("pool_stopped")


def main() -> None:
    for k in PER_AGENT:  # never anyone's identity by default (natsauth.resolve_credentials)
        os.environ.pop(k, None)
    os.environ["HIVE_NATS_CREDS"] = "none"
    settings = Settings.from_env()
    configure_logging(settings.log_level, service="hive-harness-pool")
    secure_home(settings.home)
    asyncio.run(serve_pool())


if __name__ == "__main__":
    main()
