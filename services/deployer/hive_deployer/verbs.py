"""The operator's lifecycle verbs on top of `Agents` (each is one transient state)."""

from __future__ import annotations

import asyncio
import time

import structlog

from hive_deployer import repos
from hive_deployer.layout import check_name, wipe
from hive_deployer.lifecycle import Agents
from hive_deployer.store import AgentRow
from hivewire import natsauth
from hivewire.errors import HiveError
from hivewire.names import MANAGER
from hivewire.wire.deployer import AgentInfo

log = structlog.get_logger("hive_deployer.verbs")


class Lifecycle(Agents):
    async def spawn(self, name: str, runtime: str | None = None, *, start: bool = True,
                    host: str | None = None) -> AgentInfo:
        name = check_name(name, new=True)
        existing = await self.store.agent(name)
        if existing is not None:
            hint = " (destroyed: revive or purge it)" if existing.state == "destroyed" else ""
            raise HiveError("conflict", f"agent {name} already exists{hint}")
        if runtime and runtime != self.runtime.kind:
            raise HiveError("bad_request", f"this deployer runs the {self.runtime.kind} runtime, not {runtime}")
        if self.place is not None:
            await self.place(name, host)  # which host runs it (issue 26)
        elif host:
            raise HiveError("bad_request", "this deployer runs agents on its own host only")
        async with self.transition(name, "spawning", "spawn"):
            self.layout.make_agent_dirs(name)
            sha = await asyncio.to_thread(repos.first_deploy, self.layout, name, "0")
            now = time.time()
            row = AgentRow(name=name, state="stopped", desired="running" if start else "stopped",
                           runtime=self.runtime.kind, created_at=now, since=now, deployed_tag="deployed/0",
                           deployed_sha=sha)
            await self.store.save(row)
            await self.write_meta(f"deploy {name} deployed/0 {sha[:12]}")
            await self.store.record_deploy(name, "0", "spawn", "deployed", commit_ref=sha)
            if start:
                await self._start_proc(row)
            await self._changed(row, f"[hive-deployer] spawned {name} ({self.runtime.kind} runtime)")
        return await self.info(await self.row(name))

    async def start(self, name: str) -> AgentInfo:
        row = await self._live(name)
        async with self.transition(name, "starting", "start"):
            row.desired = "running"
            self._cancel_restart(name)
            if self.procs.pid(name) is None:
                await self._start_proc(row)
                await self._changed(row, "[hive-deployer] started")
            else:
                await self.store.save(row)
        return await self.info(await self.row(name))

    async def stop(self, name: str, *, hard: bool = False) -> AgentInfo:
        row = await self._live(name)
        verb = "kill" if hard else "stop"
        async with self.transition(name, "killing" if hard else "stopping", verb):
            row.desired = "stopped"
            self._cancel_restart(name)
            await self.notifier.system_message(name, f"[hive-deployer] {'killed' if hard else 'stopping'}")
            await self.procs.stop(name, timeout=self.opts.stop_timeout, hard=hard)
            await self._set(row, "stopped")
        return await self.info(await self.row(name))

    async def kill(self, name: str) -> AgentInfo:
        return await self.stop(name, hard=True)

    async def restart(self, name: str) -> AgentInfo:
        row = await self._live(name)
        async with self.transition(name, "restarting", "restart"):
            row.desired = "running"
            self._cancel_restart(name)
            await self.procs.stop(name, timeout=self.opts.stop_timeout)
            await self._start_proc(row)
            await self._changed(row, "[hive-deployer] restarted")
        return await self.info(await self.row(name))

    async def rebuild(self, name: str) -> AgentInfo:
        """Re-render meta from what is deployed and restart the agent on it."""
        row = await self._live(name)
        async with self.transition(name, "rebuilding", "rebuild"):
            await self.write_meta(f"rebuild {name} {row.deployed_tag} {(row.deployed_sha or '')[:12]}")
            was_running = self.procs.pid(name) is not None or row.desired == "running"
            await self.procs.stop(name, timeout=self.opts.stop_timeout)
            if was_running:
                row.desired = "running"
                await self._start_proc(row)
            await self._changed(row, "[hive-deployer] rebuilt")
        return await self.info(await self.row(name))

    async def destroy(self, name: str, *, purge: bool = False) -> AgentInfo:
        name = check_name(name)
        if name == MANAGER:
            raise HiveError("forbidden", "the manager can be neither destroyed nor purged")
        row = await self.row(name)
        if row.state == "destroyed" and not purge:
            return await self.info(row)
        async with self.transition(name, "purging" if purge else "destroying", "purge" if purge else "destroy"):
            self._cancel_restart(name)
            if row.state != "destroyed":
                await self.notifier.system_message(name, "[hive-deployer] destroyed (state kept)")
            await self.procs.stop(name, timeout=self.opts.stop_timeout)
            # Its NATS user goes with it: the reload cuts any connection still using it.
            if await asyncio.to_thread(natsauth.revoke_agent, self.settings.home, name):
                log.info("nats_user_revoked", agent=name)
            row.desired = "stopped"
            row.destroyed_at = row.destroyed_at or time.time()
            await self._set(row, "destroyed")
            await self.write_meta(f"{'purge' if purge else 'destroy'} {name}")
            if purge:
                info = await self.info(row)
                await asyncio.to_thread(wipe, self.layout.agent_dir(name))
                await asyncio.to_thread(wipe, self.layout.applied(name))
                await self.store.delete_agent(name)
                info.purged, info.state_bytes, info.has_credentials = True, 0, False
                await self._changed(row, None, purged=True)
                return info
        return await self.info(await self.row(name), sizes=True)

    async def revive(self, name: str) -> AgentInfo:
        row = await self.row(name)
        if row.state != "destroyed":
            raise HiveError("conflict", f"{name} is not destroyed ({row.state})")
        async with self.transition(name, "reviving", "revive"):
            self.layout.make_agent_dirs(name)
            row.destroyed_at, row.desired = None, "running"
            await self._set(row, "stopped")
            await self.write_meta(f"revive {name} {row.deployed_tag} {(row.deployed_sha or '')[:12]}")
            await self._start_proc(row)
            await self._changed(row, "[hive-deployer] revived with its kept state")
        return await self.info(await self.row(name))

    async def _live(self, name: str) -> AgentRow:
        row = await self.row(name)
        if row.state == "destroyed":
            raise HiveError("conflict", f"{name} is destroyed: revive it first")
        return row

    async def resume(self) -> list[str]:
        """At deployer start: bring back every agent that should be running."""
        started = []
        for row in await self.store.agents():
            if row.state != "destroyed" and row.desired == "running" and self.procs.pid(row.name) is None:
                try:
                    async with self.transition(row.name, "starting", "resume"):
                        await self._start_proc(row)
                    started.append(row.name)
                except HiveError:
                    pass
            elif row.state == "running" and row.desired != "running":
                await self._set(row, "stopped")
        return started

    async def ensure_manager(self) -> AgentInfo | None:
        if await self.store.agent(MANAGER) is None:
            return await self.spawn(MANAGER)
        return None
