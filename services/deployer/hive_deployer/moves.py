"""`hive.hosts.move` / `hive agents move NAME --to H`: a stopped agent to another host.

The deployer drives it; each end is this (core) host, done here with
`transfer`'s functions, or an agent host, asked over NATS:

1. refuse unless the agent is `stopped` (not running, not crashed: the crash
   watch could start it meanwhile), the target is another host that is online
   with room, and the source host is reachable;
2. under the transient state `moving` (no other verb runs meanwhile): pack on
   the source (size, sha256, tree digest), carry the archive chunk by chunk
   through the deployer (`read` from the source, `write` to the target), and
   `commit` on the target, which installs only when size, sha256 and the
   unpacked tree all match;
3. only then is the placement changed, and the source's copy dropped. Any
   failure before the target confirmed leaves the source's files and the
   placement as they were (the target forgets what it received).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, TypeVar

import structlog

from hive_deployer import metrics, placement, transfer
from hive_deployer.layout import check_name
from hivewire.errors import HiveError
from hivewire.wire import ops
from hivewire.wire.deployer import AgentInfo
from hivewire.wire.hosts import (
    Chunk,
    ChunkRequest,
    CommitReply,
    CommitRequest,
    DropRequest,
    MoveRequest,
    PackReply,
    PackRequest,
)
from hivewire.wire.op import Op

if TYPE_CHECKING:
    from hive_deployer.hosts import Hosts

log = structlog.get_logger("hive_deployer.moves")
Req = TypeVar("Req")
Rep = TypeVar("Rep")


class End:
    """One end of a move: this host (local files) or an agent host (over NATS)."""

    def __init__(self, hosts: Hosts, host: str) -> None:
        self.hosts, self.host = hosts, host
        self.local = host == hosts.opts.name
        self.layout = hosts.agents.layout

    async def _call(self, op: Op[Req, Rep], req: Req, timeout: float = 60.0) -> Rep:
        """`op` (`hive.host.<host>.<verb>`) of this end's agent host."""
        return await self.hosts.client.request(op, req, timeout=timeout, host=self.host)

    async def pack(self, name: str, tid: str) -> PackReply:
        if self.local:
            return await asyncio.to_thread(transfer.pack, self.layout, name, tid)
        return await self._call(ops.HOST_PACK, PackRequest(agent=name, transfer=tid), 300.0)

    async def read(self, tid: str, offset: int) -> bytes:
        if self.local:
            return await asyncio.to_thread(transfer.read, self.layout, tid, offset, transfer.CHUNK)
        r = await self._call(ops.HOST_READ, ChunkRequest(transfer=tid, offset=offset, length=transfer.CHUNK))
        return r.data

    async def write(self, tid: str, offset: int, data: bytes) -> None:
        if self.local:
            await asyncio.to_thread(transfer.write, self.layout, tid, offset, data)
        else:
            await self._call(ops.HOST_WRITE, Chunk(transfer=tid, offset=offset, data=data))

    async def commit(self, name: str, tid: str, p: PackReply) -> CommitReply:
        if self.local:
            return await asyncio.to_thread(transfer.commit, self.layout, name, tid, p.size, p.sha256, p.tree)
        return await self._call(ops.HOST_COMMIT, CommitRequest(agent=name, transfer=tid, size=p.size, sha256=p.sha256,
                                                               tree=p.tree), 300.0)

    async def drop(self, name: str, tid: str, files: bool) -> None:
        if self.local:
            await asyncio.to_thread(transfer.drop, self.layout, name, tid, files)
        else:
            await self._call(ops.HOST_DROP, DropRequest(agent=name, transfer=tid, files=files))


async def move(hosts: Hosts, req: MoveRequest) -> AgentInfo:
    agents = hosts.agents
    name, to = check_name(req.name), check_name(req.to)
    row = await agents.row(name)
    src = hosts.placed(name) or hosts.opts.name
    if row.state != "stopped" or agents.procs.pid(name) is not None:
        raise HiveError("conflict", f"{name} is {row.state}: stop it first (`hive agents stop {name}`)")
    if to == src:
        raise HiveError("conflict", f"{name} is already on {to}")
    infos = [await hosts.info(n) for n in [hosts.opts.name, *sorted(hosts.reg.hosts)]]
    placement.choose(infos, to)  # the target exists, is online and has room (raises why not)
    if src != hosts.opts.name and hosts.lost(src):
        raise HiveError("unavailable", f"{name}'s host {src} is lost: its files cannot be read")
    a, b, tid = End(hosts, src), End(hosts, to), uuid.uuid4().hex
    t0 = time.monotonic()
    async with agents.transition(name, "moving", "move"):
        confirmed = False
        try:
            packed = await a.pack(name, tid)
            offset = 0
            while offset < packed.size:
                data = await a.read(tid, offset)
                if not data:
                    raise HiveError("conflict", f"the source's archive ended at {offset} of {packed.size} bytes")
                await b.write(tid, offset, data)
                offset += len(data)
            done = await b.commit(name, tid, packed)
            if done.tree != packed.tree or done.files != packed.files:
                raise HiveError("conflict", "the target reports a different file tree: not moved")
            confirmed = True
        finally:
            if not confirmed:  # the source keeps its files and the agent stays where it was
                metrics.FAILURES.labels("move").inc()
                for end in (b, a):
                    try:
                        await end.drop(name, tid, False)
                    except Exception as exc:
                        log.warning("move_cleanup_failed", agent=name, host=end.host, error=str(exc))
        if to == hosts.opts.name:
            hosts.reg.placements.pop(name, None)
        else:
            hosts.reg.placements[name] = to
        hosts.reg.save()
        try:  # the target has it: only now does the source's copy go
            await a.drop(name, tid, True)
        except Exception as exc:
            metrics.FAILURES.labels("move_drop").inc()
            log.warning("move_source_not_dropped", agent=name, host=src, error=str(exc),
                        fix=f"delete agents/{name}/state and creds on {src} by hand")
        log.info("agent_moved", agent=name, source=src, target=to, bytes=packed.size, files=packed.files,
                 sha256=packed.sha256, seconds=round(time.monotonic() - t0, 2))
    return await agents.info(await agents.row(name))
