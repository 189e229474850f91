"""Reading an agent's files wherever its host is (issue 26).

An agent's `state/` (events.sqlite, turn-stats.sqlite, its CLI's files) lives
on the host that runs it. `hive.deployer.history` and `turn_stats` (the
dashboard's view of an agent whose harness does not answer) read it here for
an agent on the core host, and ask its agent host (`hive.host.<h>.history|
turn_stats`, the same read-only reads there) for one placed elsewhere. A lost
host, or one that does not answer, is an `unavailable` error naming the host:
never an empty history that looks like an agent that did nothing.

`hive agents export` of an agent on an agent host fetches a copy of its
`state/` and `creds/` as backups do (`pack` with `live`: it may be running,
sqlite copied online; carried in chunks with `read`; size, sha256 and file
tree checked here after the checked extraction) into a scratch dir, and
exports from there; the host's packed copy is dropped either way.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from hive_deployer import history, metrics, safefs, transfer
from hive_deployer.layout import check_name
from hivewire.errors import HiveError
from hivewire.wire import ops
from hivewire.wire.agent import HistoryReply
from hivewire.wire.deployer import AgentHistoryRequest, TurnStatsReply, TurnStatsRequest
from hivewire.wire.hosts import ChunkRequest, DropRequest, PackReply, PackRequest

if TYPE_CHECKING:
    from hive_deployer.hosts import Hosts

log = structlog.get_logger("hive_deployer.hostreads")
READ_TIMEOUT_S = 10.0


async def ask_host(hosts: Hosts, name: str, host: str, op: Any, req: Any, timeout: float = READ_TIMEOUT_S) -> Any:
    """`op` on the agent host `host` for `name`'s files, or `unavailable` naming the host."""
    if hosts.lost(host):
        raise HiveError("unavailable", f"{name}'s host {host} is lost: its files cannot be read now")
    try:
        return await hosts.client.request(op, req, host=host, timeout=timeout)
    except HiveError as exc:
        if exc.code in ("timeout", "unavailable"):
            metrics.FAILURES.labels("host_read").inc()
            raise HiveError("unavailable", f"{name}'s host {host} did not answer: {exc.message}") from None
        raise


async def read_history(hosts: Hosts, req: AgentHistoryRequest) -> HistoryReply:
    name = check_name(req.name)
    host = hosts.placed(name)
    if host is None:
        return HistoryReply(events=await asyncio.to_thread(history.read_events, hosts.agents.layout, name,
                                                           req.limit, req.before_id))
    got: HistoryReply = await ask_host(hosts, name, host, ops.HOST_HISTORY, req)
    return got


async def read_turn_stats(hosts: Hosts, req: TurnStatsRequest) -> TurnStatsReply:
    name = check_name(req.name)
    host = hosts.placed(name)
    if host is None:
        return TurnStatsReply(turns=await asyncio.to_thread(history.read_turns, hosts.agents.layout, name,
                                                            req.limit))
    got: TurnStatsReply = await ask_host(hosts, name, host, ops.HOST_TURN_STATS, req)
    return got


def _unpack(archive: Path, dest: Path, p: PackReply) -> None:
    if archive.stat().st_size != p.size or transfer.file_sha256(archive) != p.sha256:
        raise HiveError("conflict", "the fetched copy differs from what the agent host packed")
    max_bytes, max_members = safefs.limits()
    safefs.extract_checked(archive, dest, transfer.TOP, max_bytes=max_bytes, max_members=max_members)
    if transfer.tree_digest(dest)[0] != p.tree:
        raise HiveError("conflict", "the unpacked copy differs from the agent host's file tree")


@asynccontextmanager
async def fetched_files(hosts: Hosts, name: str, host: str) -> AsyncIterator[Path]:
    """A checked copy of `name`'s state/ and creds/ from its agent host, in a scratch dir (removed after)."""
    layout = hosts.agents.layout
    tid = uuid.uuid4().hex
    scratch = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="hive-fetch-", dir=transfer.moves_dir(layout)))
    try:
        packed: PackReply = await ask_host(hosts, name, host, ops.HOST_PACK,
                                           PackRequest(agent=name, transfer=tid, live=True), timeout=300.0)
        try:
            with open(os.open(scratch / "copy.tar.gz", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
                offset = 0
                while offset < packed.size:
                    chunk = await ask_host(hosts, name, host, ops.HOST_READ,
                                           ChunkRequest(transfer=tid, offset=offset, length=transfer.CHUNK))
                    if not chunk.data:
                        raise HiveError("conflict", f"the copy ended at {offset} of {packed.size} bytes")
                    f.write(chunk.data)
                    offset += len(chunk.data)
        finally:
            try:
                await hosts.client.request(ops.HOST_DROP, DropRequest(agent=name, transfer=tid), host=host,
                                           timeout=READ_TIMEOUT_S)
            except HiveError as exc:  # a stale packed copy on the host: safe to delete
                log.warning("fetch_not_dropped", agent=name, host=host, error=exc.message)
        await asyncio.to_thread(_unpack, scratch / "copy.tar.gz", scratch / "files", packed)
        log.info("agent_files_fetched", agent=name, host=host, bytes=packed.size, files=packed.files)
        yield scratch / "files"
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)


async def forget_remote(hosts: Hosts, name: str) -> None:
    """Before an import replaces `name`: its files on the agent host go and it is placed on the core host."""
    host = hosts.placed(name)
    if host is None:
        return
    await ask_host(hosts, name, host, ops.HOST_DROP, DropRequest(agent=name, transfer=uuid.uuid4().hex, files=True))
    hosts.reg.placements.pop(name, None)
    hosts.reg.save()
    log.info("agent_unplaced", agent=name, host=host, why="import replaced it")
