"""Agent lifecycle: spawn, start, stop, restart, kill, rebuild, destroy, revive, purge.

Each verb runs under one transient state per agent (`spawning`, `stopping`,
...) that is cleared in a `finally`, so a failing action can never leave an
agent stuck "rebuilding". Every change is persisted, published and told to
the affected agent through the `Notifier`.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from hive_deployer import metrics, pool, repos
from hive_deployer.layout import Layout, check_name, dir_size, has_files
from hive_deployer.runtimes import Launch, Runtime
from hive_deployer.store import AgentRow, Store
from hive_deployer.supervise import Procs
from hivewire import agentenv, config, natsauth, promsd
from hivewire.errors import HiveError
from hivewire.names import MANAGER, OPERATOR
from hivewire.settings import Settings
from hivewire.wire.deployer import AgentInfo

log = structlog.get_logger("hive_deployer.lifecycle")


class Notifier(Protocol):
    async def state_changed(self, info: AgentInfo) -> None: ...

    async def system_message(self, to: str, body: str) -> None: ...


class NullNotifier:
    def __init__(self) -> None:
        self.states: list[AgentInfo] = []
        self.messages: list[tuple[str, str]] = []

    async def state_changed(self, info: AgentInfo) -> None:
        self.states.append(info)

    async def system_message(self, to: str, body: str) -> None:
        self.messages.append((to, body))


@dataclass
class Options:
    base_flake: str = "path:/etc/hive/nix"
    harness_cmd: str = ""
    stop_timeout: float = 8.0
    presence_stale_s: float = 20.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    healthy_after_s: float = 60.0
    harness_pool: bool = False  # agents' harnesses in one pool process (hive_deployer.pool); from_env: on

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Options:
        return cls(
            base_flake=config.DEPLOYER_BASE_FLAKE.get(env),
            harness_cmd=config.DEPLOYER_HARNESS_CMD.get(env),
            stop_timeout=config.DEPLOYER_STOP_TIMEOUT_S.get(env),
            presence_stale_s=config.DEPLOYER_PRESENCE_STALE_S.get(env),
            backoff_base_s=config.DEPLOYER_BACKOFF_BASE_S.get(env),
            backoff_max_s=config.DEPLOYER_BACKOFF_MAX_S.get(env),
            harness_pool=config.HARNESS_POOL.get(env),
        )


Probe = Callable[[str, float], Awaitable[bool]]
HostView = Callable[[str], tuple[str | None, bool]]  # agent -> (its host, that host is lost)
Place = Callable[[str, str | None], Awaitable[None]]  # before a spawn: (agent, host asked for)


class Agents:
    def __init__(self, layout: Layout, store: Store, runtime: Runtime, settings: Settings, notifier: Notifier,
                 options: Options | None = None, nats_url: str = "") -> None:
        self.layout, self.store, self.runtime, self.settings = layout, store, runtime, settings
        self.notifier = notifier
        self.opts = options or Options()
        self.nats_url = nats_url
        self.transient: dict[str, str] = {}
        self.procs = Procs(runtime, layout.logs, self._on_exit, on_stopped=self._unlist_metrics,
                           pool=pool.for_runtime(runtime, layout.logs, harness_cmd=self.opts.harness_cmd,
                                                 flag=self.opts.harness_pool))
        self._backoff: dict[str, int] = {}
        self._restart_tasks: dict[str, asyncio.Task[None]] = {}
        self.probe: Probe | None = None
        self.host_view: HostView | None = None  # set when the deployer knows several hosts (hive_deployer.hosts)
        self.place: Place | None = None
        self._metrics_tasks: set[asyncio.Task[None]] = set()
        self.meta_lock = asyncio.Lock()

    # --- views ------------------------------------------------------------------
    async def info(self, row: AgentRow, *, sizes: bool = False) -> AgentInfo:
        sized = sizes or row.state == "destroyed"
        host, host_lost = self.host_view(row.name) if self.host_view else (None, False)
        return AgentInfo(
            name=row.name, state=row.state, transient=self.transient.get(row.name),  # type: ignore[arg-type]
            runtime=row.runtime, pid=self.procs.pid(row.name), since=row.since,
            state_bytes=await asyncio.to_thread(dir_size, self.layout.agent_dir(row.name)) if sized else 0,
            has_credentials=has_files(self.layout.creds(row.name)), restarts=row.restarts, crashes=row.crashes,
            last_error=row.last_error, created_at=row.created_at, destroyed_at=row.destroyed_at,
            deployed=row.deployed_tag, deployed_sha=row.deployed_sha,
            confined=self.runtime.confined, host=host, host_lost=host_lost and row.state == "crashed",
        )

    async def list(self) -> list[AgentInfo]:
        return [await self.info(r, sizes=True) for r in await self.store.agents()]

    async def row(self, name: str) -> AgentRow:
        row = await self.store.agent(check_name(name))
        if row is None:
            raise HiveError("not_found", f"no agent named {name!r}")
        return row

    async def refresh_gauge(self) -> None:
        counts: dict[str, int] = {"running": 0, "stopped": 0, "crashed": 0, "destroyed": 0}
        for r in await self.store.agents():
            counts[r.state] = counts.get(r.state, 0) + 1
        for state, n in counts.items():
            metrics.AGENTS.labels(state).set(n)

    async def _changed(self, row: AgentRow, message: str | None = None, *, purged: bool = False) -> None:
        info = await self.info(row)
        info.purged = purged
        try:
            await self.notifier.state_changed(info)
            if message and not purged:
                await self.notifier.system_message(row.name, message)
        except Exception as exc:
            metrics.FAILURES.labels("notify").inc()
            log.warning("notify_failed", agent=row.name, error=str(exc))
        await self.refresh_gauge()

    async def _set(self, row: AgentRow, state: str, *, error: str | None = None, message: str | None = None) -> None:
        if state != row.state:
            row.since = time.time()
        row.state = state
        row.last_error = error
        await self.store.save(row)
        await self._changed(row, message)

    @asynccontextmanager
    async def transition(self, name: str, transient: str, verb: str) -> AsyncIterator[None]:
        """One transient state per agent; always cleared, even on failure."""
        if name in self.transient:
            metrics.ACTIONS.labels(verb, "conflict").inc()
            raise HiveError("conflict", f"{name} is busy ({self.transient[name]})")
        self.transient[name] = transient
        outcome = "ok"
        try:
            row = await self.store.agent(name)
            if row:
                await self._changed(row)
            yield
        except BaseException as exc:
            outcome = getattr(exc, "code", "internal")
            log.warning("action_failed", agent=name, verb=verb, error=str(exc))
            raise
        finally:
            self.transient.pop(name, None)
            metrics.ACTIONS.labels(verb, outcome).inc()
            row = await self.store.agent(name)
            if row:
                await self._changed(row)

    # --- processes ----------------------------------------------------------------
    def harness_argv(self) -> list[str]:
        return shlex.split(self.opts.harness_cmd) if self.opts.harness_cmd else [sys.executable, "-m", "hive_harness"]

    def nats_auth_on(self) -> bool:
        """Agents get their own NATS users when HIVE_HOME has auth and the deployer was not told `none`."""
        own = (config.NATS_CREDS.get() or "").lower()
        return own != "none" and natsauth.enabled(self.settings.home)

    def nats_identity(self, name: str) -> tuple[dict[str, str], list[Path]]:
        """The harness's own NATS credentials (issued here at its first start) and the file it may read."""
        if not self.nats_auth_on():
            return {"HIVE_NATS_CREDS": "none"}, []  # never a fallback to someone else's credentials
        env = natsauth.issue_agent(self.settings.home, name)  # adds the user and reloads nats-server if new
        creds = config.NATS_CREDS.get(env)
        return env, [Path(creds)] if creds else []

    def launch(self, name: str, env_extra: dict[str, str] | None = None, rev: str | None = None) -> Launch:
        state, creds = self.layout.state(name), self.layout.creds(name)
        identity, readable = self.nats_identity(name)
        env = {
            "HIVE_AGENT": name,
            "HIVE_HOME": str(self.settings.home),
            "HIVE_NATS_URL": self.nats_url,
            "HIVE_EVENTS_DB": str(state / "events.sqlite"),
            "HIVE_MODEL_FILE": str(state / "model"),
            "HIVE_METRICS_ADDR": "127.0.0.1:0",
            "HIVE_AGENT_CMD": self.settings.agent_cmd,
            "HIVE_LOG_LEVEL": self.settings.log_level,
            "CLAUDE_CONFIG_DIR": str(creds),
            "HIVE_DEPLOYED_REV": rev or "",
        }
        if self.settings.context_window:
            env["HIVE_CONTEXT_WINDOW"] = str(self.settings.context_window)
        # An agent's applied config (`hive.env`) reaches only its sandboxed CLI, allowlisted names only.
        allowed, refused = agentenv.filter_config_env(env_extra or {})
        if refused:
            log.warning("config_env_refused", agent=name, names=refused,
                        fix="only tuning variables pass; an operator may add names with HIVE_SANDBOX_ENV_ALLOW")
        env["HIVE_AGENT_CONFIG_ENV"] = json.dumps(allowed, sort_keys=True)
        env.update(identity)  # the harness's own NATS identity: it stays outside the agent's sandbox
        return Launch(name, self.harness_argv(), env, state, writable=[state, creds], meta=self.layout.meta,
                      hidden=[self.settings.home], readonly=readable)

    def applied_env(self, name: str) -> dict[str, str]:
        return repos.read_env(self.layout.applied(name))

    async def _start_proc(self, row: AgentRow, env: dict[str, str] | None = None, rev: str | None = None) -> None:
        env = self.applied_env(row.name) if env is None else env
        try:
            await self.procs.start(self.launch(row.name, env, rev or row.deployed_sha), rev or row.deployed_sha)
        except Exception as exc:
            metrics.FAILURES.labels("start").inc()
            await self._set(row, "crashed" if row.state == "crashed" else "stopped", error=f"start failed: {exc}")
            if isinstance(exc, HiveError):
                raise
            raise HiveError("internal", f"could not start {row.name}: {exc}") from exc
        if self.procs.pid(row.name) is None:  # it ended already (a harness pool reports that at once): the
            return  # crash watch has it, and `running` must not overwrite the crash it recorded
        await self._set(row, "running")

    async def _on_exit(self, name: str, rc: int | None, reason: str) -> None:
        """Crash watch: report (state, metric, manager) and restart with backoff."""
        row = await self.store.agent(name)
        if row is None or row.state == "destroyed":
            return
        row.crashes += 1
        metrics.CRASHES.labels(name).inc()
        n = self._backoff.get(name, 0)
        delay = min(self.opts.backoff_base_s * 2**n, self.opts.backoff_max_s)
        self._backoff[name] = n + 1
        await self._set(row, "crashed", error=reason)
        boss = OPERATOR if name == MANAGER else MANAGER
        try:
            await self.notifier.system_message(boss, f"[hive-deployer] agent {name} crashed ({reason}); "
                                                     f"restarting in {delay:.0f}s")
        except Exception as exc:
            log.warning("notify_failed", agent=boss, error=str(exc))
        if row.desired == "running":
            prev = self._restart_tasks.get(name)
            if prev is not None and prev is not asyncio.current_task():
                prev.cancel()  # one pending restart per agent: a replaced one would outlive the service's stop
            self._restart_tasks[name] = asyncio.create_task(self._restart_later(name, delay))

    async def _restart_later(self, name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        while name in self.transient:  # a verb still runs (e.g. the start whose process just died): after it
            await asyncio.sleep(0.2)
        row = await self.store.agent(name)
        if row is None or row.state != "crashed" or row.desired != "running":
            return
        try:
            async with self.transition(name, "restarting", "crash_restart"):
                row.restarts += 1
                metrics.RESTARTS.labels(name).inc()
                await self._start_proc(row)
                await self.notifier.system_message(name, "[hive-deployer] restarted after a crash")
        except HiveError as exc:
            log.warning("crash_restart_failed", agent=name, error=exc.message)
            # the process never came up: try again later with a longer backoff
            await self._on_exit(name, None, exc.message)

    def saw_presence(self, name: str, instance: str, state: str) -> None:
        r = self.procs.running.get(name)
        if r is not None and state != "offline":
            fresh = r.instance != instance
            r.last_presence, r.instance = time.monotonic(), instance
            if fresh and not isinstance(r.proc, pool.PoolProc):  # a new harness instance: tell Prometheus where
                # it serves /metrics (a pooled harness has no /metrics of its own: the pool's counts them all)
                task = asyncio.get_running_loop().create_task(self._list_metrics(name, instance))
                self._metrics_tasks.add(task)
                task.add_done_callback(self._metrics_tasks.discard)

    async def _list_metrics(self, name: str, instance: str) -> None:
        try:
            url = await asyncio.to_thread(promsd.announced, self.layout.state(name), instance)
            if url is None:
                metrics.FAILURES.labels("promsd").inc()
                log.warning("metrics_url_not_announced", agent=name, instance=instance)
                return
            await asyncio.to_thread(promsd.set_agent, self.settings.home, name, url)
            log.info("agent_metrics_listed", agent=name, metrics_url=url)
        except Exception as exc:
            metrics.FAILURES.labels("promsd").inc()
            log.warning("promsd_failed", agent=name, error=str(exc))

    async def _unlist_metrics(self, name: str) -> None:
        """An agent stopped on purpose: no scrape target (a crash keeps it, so `up == 0` shows it)."""
        try:
            await asyncio.to_thread(promsd.set_agent, self.settings.home, name, None)
        except Exception as exc:
            metrics.FAILURES.labels("promsd").inc()
            log.warning("promsd_failed", agent=name, error=str(exc))

    def check_presence(self) -> list[str]:
        """Declare agents with a stale heartbeat dead (they are restarted by the crash watch)."""
        now, stale = time.monotonic(), []
        for name, r in list(self.procs.running.items()):
            if r.stopping or name in self.transient:
                continue
            seen = r.last_presence or r.started
            if now - seen > self.opts.presence_stale_s:
                stale.append(name)
                self.procs.fail(name, f"presence stale for {now - seen:.0f}s")
            elif r.started and now - r.started > self.opts.healthy_after_s:
                self._backoff.pop(name, None)
        return stale

    def _cancel_restart(self, name: str) -> None:
        t = self._restart_tasks.pop(name, None)
        if t and not t.done():
            t.cancel()

    async def write_meta(self, message: str) -> str:
        async with self.meta_lock:
            entries = await self.meta_entries()
            return await asyncio.to_thread(repos.write_meta, self.layout, entries, message, self.opts.base_flake)

    async def meta_entries(self, override: repos.MetaEntry | None = None) -> list[repos.MetaEntry]:
        out = []
        for r in await self.store.agents():
            if override and r.name == override.name:
                continue
            if r.state != "destroyed" and r.deployed_tag and r.deployed_sha:
                out.append(repos.MetaEntry(r.name, r.deployed_tag, r.deployed_sha, self.layout.applied(r.name)))
        if override:
            out.append(override)
        return out
