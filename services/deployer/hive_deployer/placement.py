"""Which host runs an agent, and the deployer's process table across hosts (issue 26).

`choose` picks a host for a new agent: the one asked for (it must be online
and below its agent limit), else the online host with the most free
capacity (free memory from its heartbeat, among hosts below their limit;
ties: fewer agents, then name). `HostProcs` is the deployer's `Procs` with
agents on other hosts: every verb of the lifecycle (start, stop, kill,
restart, rebuild, deploy, destroy) goes through it, and for an agent placed
on an agent host it forwards to that host's `hive-agenthost` over NATS
instead of running a local process.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from hive_deployer.runtimes import Launch
from hive_deployer.supervise import Procs, Running
from hivewire import config
from hivewire.errors import HiveError
from hivewire.wire.hosts import HostInfo

if TYPE_CHECKING:
    from hive_deployer.hosts import Hosts


def choose(hosts: list[HostInfo], asked: str | None = None) -> str:
    def has_room(h: HostInfo) -> bool:
        return not h.agent_limit or len(h.agents) < h.agent_limit

    if asked:
        match = next((h for h in hosts if h.name == asked), None)
        if match is None:
            raise HiveError("not_found", f"no host named {asked!r} (see `hive hosts`)")
        if match.state != "online":
            raise HiveError("unavailable", f"host {asked} is {match.state}")
        if not has_room(match):
            raise HiveError("conflict", f"host {asked} is full ({len(match.agents)}/{match.agent_limit} agents)")
        return asked
    fit = [h for h in hosts if h.state == "online" and has_room(h)]
    if not fit:
        raise HiveError("unavailable", "no online host has room for another agent (see `hive hosts`)")
    return min(fit, key=lambda h: (-h.mem_available, len(h.agents), h.name)).name


class HostProcs(Procs):
    """Local agents as `Procs` runs them; agents placed elsewhere through their host."""

    hosts: Hosts | None = None

    def pid(self, name: str) -> int | None:
        host = self.hosts.placed(name) if self.hosts else None
        if host is None:
            return super().pid(name)
        r = self.hosts.remote.get(name) if self.hosts else None
        return r.pid if r is not None else None

    async def start(self, launch: Launch, rev: str | None = None) -> Running:  # type: ignore[override]
        host = self.hosts.placed(launch.name) if self.hosts else None
        if host is None or self.hosts is None:
            return await super().start(launch, rev)
        if self.pid(launch.name):
            raise RuntimeError(f"{launch.name} is already running on {host}")
        config_env = json.loads(config.AGENT_CONFIG_ENV.get(launch.env) or "{}")
        await self.hosts.forward_start(host, launch.name, rev or "", config_env)
        return None  # type: ignore[return-value]  # no local process: callers ignore the value

    async def stop(self, name: str, *, timeout: float = 8.0, hard: bool = False) -> int | None:
        host = self.hosts.placed(name) if self.hosts else None
        if host is None or self.hosts is None:
            return await super().stop(name, timeout=timeout, hard=hard)
        rc = await self.hosts.forward_stop(host, name, timeout, hard)
        await self._stopped(name)
        return rc
