"""Many hosts (issue 26), the hub's side: the host registry, joins, heartbeats,
lost hosts, and which agent runs where.

The deployer on the core host keeps `HIVE_HOME/hosts/registry.json` (0600):
hosts (invited | online | lost, the sha256 of a pending join token, its
expiry, the agent limit) and placements (agent -> host; an agent with none
runs on this, the core, host). Agent hosts report every
`HIVE_HOST_HEARTBEAT_S` on `hive.host.<host>.up.heartbeat`; one silent for
`HIVE_HOST_LOST_S` (10 s) is `lost` and its running agents are `crashed`
with `host_lost` (shown `dead (host lost)`): nothing is restarted elsewhere,
their messages wait in the broker. When the host reports again, agents it
still runs are adopted and those that should run are started there again (a
new harness instance, so the broker redelivers what was in flight).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import Counter, Gauge

from hive_deployer import hostmetrics, joinhttp, placement
from hive_deployer.hostregistry import HostOptions, Live, Registry, Remote, meminfo
from hive_deployer.layout import check_name
from hive_deployer.verbs import Lifecycle
from hivewire import codec, hostauth, subjects, tls
from hivewire.errors import HiveError
from hivewire.service import Context, Endpoint, HiveClient
from hivewire.tasks import cancel_and_wait
from hivewire.transport import Msg, Subscription, Transport
from hivewire.wire import ops
from hivewire.wire.deployer import AgentInfo
from hivewire.wire.hosts import (
    CredsReply,
    CredsRequest,
    HostAddReply,
    HostAddRequest,
    HostAgentReply,
    HostHeartbeat,
    HostInfo,
    HostList,
    HostNameRequest,
    HostStartRequest,
    HostStopRequest,
    JoinReply,
    JoinRequest,
    MoveRequest,
)

log = structlog.get_logger("hive_deployer.hosts")
HOSTS = Gauge("hive_hosts", "Hosts by state (the core host included).", ["state"])
HOST_EVENTS = Counter("hive_host_events_total", "Joins, losses and returns of hosts.", ["event"])


class Hosts:
    def __init__(self, transport: Transport, home: Path, agents: Lifecycle, opts: HostOptions | None = None) -> None:
        self.transport, self.home, self.agents = transport, home, agents
        self.opts = opts or HostOptions.from_env()
        self.reg = Registry(home)
        self.live: dict[str, Live] = {}
        self.remote: dict[str, Remote] = {}
        self.stopping: set[str] = set()
        self.client = HiveClient(transport, timeout=30.0)
        self._subs: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Task[Any]] = set()
        self.join_server: joinhttp.JoinServer | None = None
        self.targets = hostmetrics.HostTargets(home)  # agent hosts' Prometheus targets
        self.cert: tls.CoreCert | None = None  # the join endpoint's, when it serves HTTPS

    # --- views used by the lifecycle ---------------------------------------------
    def placed(self, agent: str) -> str | None:
        """The agent host `agent` runs on, None for this (core) host."""
        return self.reg.placements.get(agent)

    def view(self, agent: str) -> tuple[str | None, bool]:
        host = self.placed(agent)
        return (host or self.opts.name), bool(host and self.live.get(host, Live()).lost)

    def lost(self, host: str) -> bool:
        return self.live.get(host, Live(lost=True)).lost or self.live.get(host) is None

    def endpoints(self) -> list[Endpoint[Any]]:
        return [
            Endpoint.of(ops.HOSTS_ADD, self.h_add),
            Endpoint.of(ops.HOSTS_REMOVE, self.h_remove),
            Endpoint.of(ops.HOSTS_LIST, self.h_list),
            Endpoint.of(ops.HOST_CREDS, self.h_creds),
            Endpoint.of(ops.HOSTS_MOVE, self.h_move),
        ]

    async def start(self) -> None:
        self._subs.append(await self.transport.subscribe(subjects.host_up_pattern("heartbeat"), self._on_heartbeat))
        for name in self.reg.hosts:  # a deployer restart: give every host one lost_s to report
            self.live.setdefault(name, Live(seen=time.monotonic()))
        if self.opts.join_addr:
            host = self.opts.join_addr.rpartition(":")[0].strip("[]")
            if self.opts.tls if self.opts.tls is not None else not tls.is_loopback(host or "0.0.0.0"):
                # The same CA and certificate as `hive up`'s nats-server (made here when it has none).
                self.cert = await asyncio.to_thread(tls.ensure, self.home, tls.core_sans([host]))
            self.join_server = joinhttp.JoinServer(self.opts.join_addr, self.join, cert=self.cert)
            await self.join_server.start()
        self._tasks.append(asyncio.create_task(self._watch(), name="hosts-watch"))

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks, *self._spawned)
        for sub in self._subs:
            await sub.unsubscribe()
        if self.join_server:
            await self.join_server.stop()

    # --- operator verbs -----------------------------------------------------------------
    async def h_add(self, ctx: Context, req: HostAddRequest) -> HostAddReply:
        name = check_name(req.name)
        if name == self.opts.name:
            raise HiveError("conflict", f"{name} is this core host's own name")
        rec = self.reg.hosts.get(name)
        if rec and rec.get("state") != "invited":
            raise HiveError("conflict", f"host {name} already joined (remove it first)")
        if not self.opts.join_addr:
            raise HiveError("unavailable", "joins are off: set HIVE_JOIN_ADDR (host:port the join endpoint listens "
                                           "on) in the deployer's environment")
        token = hostauth.new_token()
        now = time.time()
        self.reg.hosts[name] = {"state": "invited", "added_at": now, "token_hash": hostauth.token_hash(token),
                                "token_expires_at": now + req.ttl_s, "token_used": False,
                                "agent_limit": req.agent_limit}
        self.reg.save()
        url = self.opts.join_url or f"{'https' if self.cert else 'http'}://{self._join_host()}"
        pin = f" --ca-sha256 {self.cert.sha256}" if self.cert else ""
        log.info("host_invited", host=name, expires_in_s=req.ttl_s)
        return HostAddReply(name=name, token=token, expires_at=now + req.ttl_s, join_url=url,
                            ca_sha256=self.cert.sha256 if self.cert else "",
                            command=f"hive host join {url} --name {name} --token {token}{pin}")

    def _join_host(self) -> str:
        host, _, port = self.opts.join_addr.rpartition(":")
        if host in ("", "0.0.0.0", "::", "[::]"):
            host = socket.gethostname()
        return f"{host}:{port}"

    async def join(self, req: JoinRequest, addr: str = "") -> JoinReply:
        """POST /join: a valid, unused, unexpired token gets the host its NATS identity (once)."""
        name = check_name(req.name)
        rec = self.reg.hosts.get(name)
        why = "unknown host" if rec is None else hostauth.check_token(rec, req.token)
        if why is not None:
            HOST_EVENTS.labels("join_refused").inc()
            log.warning("host_join_refused", host=name, reason=why)
            raise HiveError("forbidden", f"join refused: {why}")
        assert rec is not None
        # `addr`, the sender's IP, is where the core's Prometheus scrapes this host (hostmetrics)
        rec.update(token_used=True, token_hash=None, state="online", joined_at=time.time(),
                   addr=hostmetrics.peer_addr(addr))
        self.reg.save()
        creds = await asyncio.to_thread(hostauth.issue_host, self.home, name)
        self.live[name] = Live(seen=time.monotonic(), seen_wall=time.time())
        HOST_EVENTS.labels("joined").inc()
        log.info("host_joined", host=name, addr=rec["addr"])
        return JoinReply(name=name, nats_urls=self.opts.nats_urls, nats_port=self.opts.nats_port, creds=creds,
                         hub=self.opts.name)

    async def h_remove(self, ctx: Context, req: HostNameRequest) -> HostInfo:
        name = check_name(req.name)
        if name not in self.reg.hosts:
            raise HiveError("not_found", f"no host named {name!r}")
        placed = [a for a, h in self.reg.placements.items() if h == name]
        live = [a for a in placed if (row := await self.agents.store.agent(a)) and row.state != "destroyed"]
        if live and not req.force:
            raise HiveError("conflict", f"host {name} still has agents: {', '.join(sorted(live))} "
                                        "(destroy them, or remove with force)")
        info = await self.info(name)
        await asyncio.to_thread(hostauth.revoke_host, self.home, name)  # the reload cuts its connection
        for a in placed:
            self.remote.pop(a, None)
            self.reg.placements.pop(a, None)
        del self.reg.hosts[name]
        self.live.pop(name, None)
        self.reg.save()
        await self.targets.drop(name)
        info.state = "removed"
        HOST_EVENTS.labels("removed").inc()
        log.info("host_removed", host=name, agents=placed)
        return info

    async def h_move(self, ctx: Context, req: MoveRequest) -> AgentInfo:
        from hive_deployer import moves

        return await moves.move(self, req)

    async def h_list(self, ctx: Context, req: HostNameRequest) -> HostList:
        names = [self.opts.name, *sorted(self.reg.hosts)]
        return HostList(hosts=[await self.info(n) for n in names if not req.name or n == req.name])

    async def info(self, name: str) -> HostInfo:
        rows = {r.name: r for r in await self.agents.store.agents()}
        if name == self.opts.name:
            total, avail = meminfo()
            mine = [n for n, r in rows.items() if n not in self.reg.placements and r.state != "destroyed"]
            return HostInfo(name=name, state="online", role="core", last_heartbeat=time.time(),
                            version=self.agents_version(), runtime=self.agents.runtime.kind, mem_total=total,
                            mem_available=avail, cpus=os.cpu_count() or 0, load1=os.getloadavg()[0],
                            agent_limit=self.opts.agent_limit, agents=sorted(mine),
                            running=len([n for n in mine if self.agents.procs.pid(n)]))
        rec = self.reg.hosts[name]
        live = self.live.get(name, Live())
        hb = live.hb
        placed = sorted(a for a, h in self.reg.placements.items() if h == name and a in rows)
        state = rec.get("state", "invited")
        if state != "invited":
            state = "lost" if live.lost else "online"
        return HostInfo(
            name=name, state=state, added_at=rec.get("added_at", 0.0), joined_at=rec.get("joined_at"),
            last_heartbeat=live.seen_wall or None, version=hb.version if hb else "", runtime=hb.runtime if hb else "",
            mem_total=hb.mem_total if hb else 0, mem_available=hb.mem_available if hb else 0,
            cpus=hb.cpus if hb else 0, load1=hb.load1 if hb else 0.0,
            agent_limit=rec.get("agent_limit") or (hb.agent_limit if hb else 0), agents=placed,
            running=len([a for a in placed if a in self.remote]),
            token_expires_at=rec.get("token_expires_at") if state == "invited" else None)

    def agents_version(self) -> str:
        try:
            return version("hive-deployer")
        except PackageNotFoundError:
            return ""

    # --- placement ------------------------------------------------------------------------
    async def place(self, agent: str, host: str | None) -> None:
        """Before a spawn: record where `agent` runs (`host`, or the one with most free capacity)."""
        infos = [await self.info(n) for n in [self.opts.name, *sorted(self.reg.hosts)]]
        chosen = placement.choose(infos, host)
        before = self.reg.placements.get(agent)
        if chosen == self.opts.name:
            self.reg.placements.pop(agent, None)
        else:
            self.reg.placements[agent] = chosen
        if self.reg.placements.get(agent) != before:
            self.reg.save()
        log.info("agent_placed", agent=agent, host=chosen, asked=host)

    # --- forwarding (HostProcs calls these) ---------------------------------------------------
    async def forward_start(self, host: str, agent: str, rev: str, config_env: dict[str, str]) -> HostAgentReply:
        if self.lost(host) or self.live[host].hb is None:
            raise HiveError("unavailable", f"host {host} is lost or not heard from yet: {agent} starts when it "
                                           "reports")
        rep = await self.client.request(ops.HOST_START, HostStartRequest(agent=agent, rev=rev, config_env=config_env),
                                        timeout=60.0, host=host)
        self.remote[agent] = Remote(host, rep.pid, rep.at)
        return rep

    async def forward_stop(self, host: str, agent: str, timeout: float, hard: bool) -> int | None:
        self.stopping.add(agent)
        try:
            if self.lost(host):
                log.warning("stop_on_lost_host", agent=agent, host=host)
                return None
            rep = await self.client.request(ops.HOST_STOP, HostStopRequest(agent=agent, hard=hard, timeout=timeout),
                                            timeout=timeout + 10.0, host=host)
            return rep.rc
        finally:
            self.remote.pop(agent, None)
            self.stopping.discard(agent)

    async def h_creds(self, ctx: Context, req: CredsRequest) -> CredsReply:
        """An agent host asks for one of its agents' NATS credentials (only agents placed there)."""
        host, agent = ctx.token(2), check_name(req.agent)
        row = await self.agents.store.agent(agent)
        if self.reg.placements.get(agent) != host or row is None or row.state == "destroyed":
            log.warning("host_creds_refused", host=host, agent=agent)
            raise HiveError("forbidden", f"{agent} is not placed on {host}")
        if not self.agents.nats_auth_on():
            return CredsReply(agent=agent, creds="")
        return CredsReply(agent=agent, creds=await asyncio.to_thread(hostauth.agent_creds_text, self.home, agent))

    # --- heartbeats and lost hosts ----------------------------------------------------------
    async def _on_heartbeat(self, msg: Msg) -> None:
        host = subjects.token(msg.subject, 2)
        try:
            hb = codec.decode(msg.data, HostHeartbeat)
        except Exception:
            return
        if host not in self.reg.hosts or hb.host != host:
            return
        live = self.live.setdefault(host, Live())
        was_lost, first = live.lost or live.hb is None, live.hb is None  # lost, or first report since we started
        live.seen, live.seen_wall, live.hb, live.lost = time.monotonic(), time.time(), hb, False
        if self.reg.hosts[host].get("state") == "invited":
            self.reg.hosts[host]["state"] = "online"
        running = {a.name: a for a in hb.agents}
        for agent, r in list(self.remote.items()):
            if r.host == host and agent not in running and hb.sent_at > r.started_at and agent not in self.stopping:
                del self.remote[agent]
                self._spawn(self.agents._on_exit(agent, None, hb.exits.get(agent) or f"exited on host {host}"))
        for a in hb.agents:
            if a.name not in self.remote and self.reg.placements.get(a.name) == host and a.name not in self.stopping:
                self.remote[a.name] = Remote(host, a.pid, a.started_at)  # still running there (we restarted)
                row = await self.agents.store.agent(a.name)
                if row is not None and row.state != "running" and a.name not in self.agents.transient:
                    await self.agents._set(row, "running")
        if host in self.reg.hosts:  # not removed meanwhile
            await self.targets.report(host, self.reg.hosts[host].get("addr", ""), hb, self.reg.placements)
        if was_lost:
            if not first:
                HOST_EVENTS.labels("back").inc()
            log.info("host_reporting", host=host, was_lost=was_lost)
            await self._resume(host)

    async def _resume(self, host: str) -> None:
        for agent, h in list(self.reg.placements.items()):
            row = await self.agents.store.agent(agent)
            if h == host and row and row.desired == "running" and row.state != "destroyed" \
                    and agent not in self.remote and agent not in self.agents.transient:
                self._spawn(self._start_quietly(agent))

    async def _start_quietly(self, agent: str) -> None:
        try:
            await self.agents.start(agent)
        except HiveError as exc:
            log.warning("resume_on_host_failed", agent=agent, error=exc.message)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.opts.lost_s / 4))
            try:
                await self.check_lost()
            except Exception:
                log.exception("hosts_watch_failed")

    async def check_lost(self) -> list[str]:
        now, lost = time.monotonic(), []
        for name, rec in self.reg.hosts.items():
            live = self.live.setdefault(name, Live(seen=now))
            if rec.get("state") == "invited" or live.lost or now - live.seen <= self.opts.lost_s:
                continue
            live.lost = True
            lost.append(name)
            HOST_EVENTS.labels("lost").inc()
            log.warning("host_lost", host=name, silent_s=round(now - live.seen, 1))
            await self.targets.drop(name)
            for agent, h in list(self.reg.placements.items()):
                if h != name:
                    continue
                self.remote.pop(agent, None)
                self.agents._cancel_restart(agent)
                row = await self.agents.store.agent(agent)
                if row is not None and row.state == "running":
                    await self.agents._set(row, "crashed", error=f"host {name} lost")
        counts = {"online": 1, "lost": 0, "invited": 0}
        for name, rec in self.reg.hosts.items():
            st = rec.get("state", "invited")
            counts["lost" if st != "invited" and self.live.get(name, Live()).lost else st] += 1
        for st, n in counts.items():
            HOSTS.labels(st).set(n)
        return lost
