"""The approval-driven deploy flow, serialized by one lock.

propose  -> copy the manager's commit into applied/<name>, tag proposal/<id>
approve  -> approved/<id>, building/<id>; check the tree and the candidate
            meta flake (nix-instantiate --parse); swap the agent onto the new
            config in its runtime and probe it; then deployed/<id> + a meta
            commit "deploy <name> deployed/<id> <sha12>"
            any failure -> failed/<id> (with the error) and the previous
            deploy keeps (or goes back to) running
deny     -> denied/<id> with the note
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import tempfile
import time
from pathlib import Path

import structlog

from hive_deployer import metrics, repos
from hive_deployer.layout import check_name
from hive_deployer.verbs import Lifecycle
from hivewire.errors import HiveError
from hivewire.names import MANAGER
from hivewire.wire.deployer import DeployReply

log = structlog.get_logger("hive_deployer.deploys")


class DeployLock:
    """An asyncio lock plus an flock on run/deploy.lock (one deploy at a time per host)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()
        self._fd: int | None = None

    async def __aenter__(self) -> DeployLock:
        await self._lock.acquire()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(0.1)
        self._fd = fd
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        self._lock.release()


class Deploys:
    def __init__(self, agents: Lifecycle, probe_timeout: float = 20.0) -> None:
        self.agents = agents
        self.layout = agents.layout
        self.lock = DeployLock(agents.layout.deploy_lock)
        self.probe_timeout = probe_timeout
        self.on_result: list[object] = []

    async def init_config(self, name: str) -> str:
        name = check_name(name, new=True)
        self.layout.make_agent_dirs(name)
        return await asyncio.to_thread(repos.init_config, self.layout, name)

    async def propose(self, name: str, did: str, commit_ref: str, approval_id: str | None = None) -> DeployReply:
        name, did = check_name(name), repos.deploy_id(did)
        await self.agents.row(name)
        sha = await asyncio.to_thread(repos.propose, self.layout, name, commit_ref, did)
        await self.agents.store.record_deploy(name, did, "apply_commit", "proposed", commit_ref=sha,
                                              approval_id=approval_id)
        return DeployReply(name=name, id=did, outcome="proposed", sha=sha, tags=[f"proposal/{did}"])

    async def deny(self, name: str, did: str, note: str | None = None) -> DeployReply:
        name, did = check_name(name), repos.deploy_id(did)
        await asyncio.to_thread(repos.deny, self.layout, name, did, note)
        await self.agents.store.record_deploy(name, did, "apply_commit", "denied", note=note)
        metrics.DEPLOYS.labels("denied").inc()
        await self._tell(name, f"[hive-deployer] deploy {did} of {name} denied: {note or '(no note)'}")
        tags = await asyncio.to_thread(repos.stages, self.layout, name, did)
        return DeployReply(name=name, id=did, outcome="denied", tags=[f"{t}/{did}" for t in tags], note=note)

    async def approve(self, name: str, did: str, commit_ref: str | None = None) -> DeployReply:
        """Build and deploy proposal/<id> (proposing `commit_ref` first when there is no proposal yet)."""
        name, did = check_name(name), repos.deploy_id(did)
        row = await self.agents._live(name)
        if await asyncio.to_thread(repos.proposal_sha, self.layout, name, did) is None:
            if not commit_ref:
                raise HiveError("not_found", f"no proposal/{did} for {name} and no commit_ref to propose")
            await self.propose(name, did, commit_ref)
        done = await asyncio.to_thread(repos.stages, self.layout, name, did)
        if {"deployed", "failed", "denied"} & set(done):
            raise HiveError("conflict", f"deploy {did} of {name} already ended ({', '.join(done)})")
        started = time.monotonic()
        async with self.lock, self.agents.transition(name, "deploying", "deploy"):
            sha = await asyncio.to_thread(repos.approve, self.layout, name, did)
            await self.agents.store.record_deploy(name, did, "apply_commit", "building", commit_ref=sha)
            error, note = await self._build_and_swap(row.name, did, sha)
            if error is None:
                await asyncio.to_thread(repos.mark_deployed, self.layout, name, did)
                row = await self.agents.row(name)
                row.deployed_tag, row.deployed_sha = f"deployed/{did}", sha
                await self.agents.store.save(row)
                await self.agents.write_meta(f"deploy {name} deployed/{did} {sha[:12]}")
                outcome = "deployed"
            else:
                await asyncio.to_thread(repos.fail, self.layout, name, did, error)
                outcome = "failed"
            await self.agents.store.record_deploy(name, did, "apply_commit", outcome, note=error or note)
        metrics.DEPLOYS.labels(outcome).inc()
        metrics.DEPLOY_SECONDS.observe(time.monotonic() - started)
        msg = (f"[hive-deployer] deploy {name} deployed/{did} {sha[:12]}" if outcome == "deployed"
               else f"[hive-deployer] deploy {did} of {name} failed: {error}; the previous deploy keeps running")
        await self._tell(name, msg)
        tags = await asyncio.to_thread(repos.stages, self.layout, name, did)
        return DeployReply(name=name, id=did, outcome=outcome, sha=sha,  # type: ignore[arg-type]
                           tags=[f"{t}/{did}" for t in tags], error=error, note=note)

    async def _build_and_swap(self, name: str, did: str, sha: str) -> tuple[str | None, str | None]:
        """Returns (error, note); on error the previous deploy is running as before."""
        note = None
        if repos.NIX is None:
            note = f"nix-instantiate not found: the build step used the {self.agents.runtime.kind} runtime only"
        with tempfile.TemporaryDirectory(prefix=f"hive-build-{name}-") as tmp:
            tree = await asyncio.to_thread(repos.export_tree, self.layout, name, sha, Path(tmp) / "tree")
            errors = await asyncio.to_thread(repos.check_tree, tree)
            if errors:
                return "build: " + "; ".join(errors), note
            cand = repos.MetaEntry(name, f"deployed/{did}", sha, self.layout.applied(name))
            entries = await self.agents.meta_entries(override=cand)
            err = await asyncio.to_thread(repos.check_meta, entries, self.agents.opts.base_flake)
            if err:
                return f"meta flake does not parse: {err}", note
            new_env = repos.read_env(tree)
        row = await self.agents.row(name)
        if self.agents.procs.pid(name) is None and row.desired != "running":
            return None, (note or "") + " (agent stopped: it starts on the new config next time)"
        old_env, old_rev = self.agents.applied_env(name), row.deployed_sha
        await self.agents.procs.stop(name, timeout=self.agents.opts.stop_timeout)
        error = None
        try:
            await self.agents.procs.start(self.agents.launch(name, new_env, sha), sha)
            if not await self._healthy(name):
                error = "runtime: the agent did not come up on the new config"
        except Exception as exc:
            error = f"runtime: {exc}"
        if error is not None:
            log.warning("deploy_failed_restoring", agent=name, id=did, error=error)
            await self.agents.procs.stop(name, timeout=self.agents.opts.stop_timeout)
            await self.agents.procs.start(self.agents.launch(name, old_env, old_rev), old_rev)
        row = await self.agents.row(name)
        # Checked after the read, with no await before the write: a process that ended already is the crash
        # watch's (it records the crash and restarts it), and `running` here would hide it and stop that restart.
        if self.agents.procs.pid(name) is not None:
            await self.agents._set(row, "running", error=error)
        return error, note

    async def _healthy(self, name: str) -> bool:
        if self.agents.probe is not None:
            return await self.agents.probe(name, self.probe_timeout)
        await asyncio.sleep(1.0)
        return self.agents.procs.pid(name) is not None

    async def _tell(self, name: str, body: str) -> None:
        try:
            await self.agents.notifier.system_message(name, body)
            if name != MANAGER:
                await self.agents.notifier.system_message(MANAGER, body)
        except Exception as exc:
            metrics.FAILURES.labels("notify").inc()
            log.warning("notify_failed", agent=name, error=str(exc))
