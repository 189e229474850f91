"""Sessions placed on an agent host (`hive session create --host H`, issue 26).

The session's row, `session.json`, `session.log`, `session.jsonl`, its cost
and its output dir stay on the core host, at the same paths as a local
session's, so `get`, `log`, `output_dir` and the ledger work the same. Only
the command runs on the agent host (`hive-agenthost`, `hive_agenthost.sessions`),
built and confined exactly as here:

1. `session_start` on the host (a runtime that cannot confine refuses there,
   and the session fails with its reason in the log);
2. its output is pulled from the host (`session_read`, a long-poll from an
   offset) into the same reader a local run's pipe feeds, so `session.log`,
   `session.jsonl` and the cost come out as for a local run, as it runs;
3. once the host says the command ended, its output dir is packed there
   (`session_pack`), carried in chunks (the moves' `read`), checked (size,
   sha256, file tree) and installed here; then the host's copy is dropped.

A host that is lost while the session runs fails it (`host <h> lost` in its
log); so does an agent host that no longer knows the session (it restarted).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from hive_deployer import metrics, transfer
from hive_deployer.layout import check_name
from hivewire.errors import HiveError
from hivewire.wire import ops
from hivewire.wire.deployer import SessionInfo, StatusReply
from hivewire.wire.hosts import ChunkRequest, HostSessionRef, HostSessionStart, PackReply

if TYPE_CHECKING:
    from hive_deployer.hosts import Hosts
    from hive_deployer.sessions import Sessions

log = structlog.get_logger("hive_deployer.sessionhost")
READ_TIMEOUT_S = 15.0  # the host's long-poll waits READ_WAIT_S (2 s) at most
RETRY_S = 1.0


class RemoteSessions:
    def __init__(self, sessions: Sessions, hosts: Hosts) -> None:
        self.sessions, self.hosts = sessions, hosts
        self.client = hosts.client

    def check_host(self, host: str) -> str:
        """'' for the core host; else a registered agent host that is not lost."""
        host = check_name(host)
        if host == self.hosts.opts.name:
            return ""
        if host not in self.hosts.reg.hosts:
            raise HiveError("not_found", f"no host named {host!r} (see `hive hosts`)")
        if self.hosts.lost(host):
            raise HiveError("unavailable", f"host {host} is lost")
        return host

    def _note(self, sid: str, line: str) -> None:
        with open(self.sessions.layout.session_log(sid), "a") as f:
            f.write(line + "\n")

    async def start(self, info: SessionInfo, args: list[str]) -> StatusReply:
        sid, host = info.session_id, info.host
        try:
            if self.hosts.lost(host):
                raise HiveError("unavailable", f"host {host} is lost")
            rep = await self.client.request(
                ops.HOST_SESSION_START, HostSessionStart(session_id=sid, task=info.task, priority=info.priority,
                                                         metadata=info.metadata, args=args),
                host=host, timeout=60.0)
            if rep.error:
                raise HiveError("unavailable", rep.error)
        except HiveError as exc:
            metrics.FAILURES.labels("session_remote").inc()
            log.warning("session_start_failed", session=sid, host=host, error=exc.message)
            self._note(sid, f"start failed on host {host}: {exc.message}")
            await self.sessions._finish(sid, None, "failed")
            return await self.sessions.status(sid)
        log.info("session_started", session=sid, host=host, pid=rep.pid)
        output = asyncio.StreamReader()
        pulled = asyncio.create_task(self._pull(sid, host, output), name=f"session-pull-{sid[:8]}")

        async def ended() -> int | None:
            rc = await pulled
            if rc is None:
                return None
            return rc if await self._fetch_outputs(sid, host) else None

        return await self.sessions.running(sid, output, ended)

    async def _pull(self, sid: str, host: str, output: asyncio.StreamReader) -> int | None:
        """Feed the host's output of the session into `output`; its exit code, None when it was lost."""
        offset = 0
        try:
            while True:
                try:
                    ref = HostSessionRef(session_id=sid, offset=offset)
                    got = await self.client.request(ops.HOST_SESSION_READ, ref, host=host, timeout=READ_TIMEOUT_S)
                except HiveError as exc:
                    if exc.code in ("timeout", "unavailable") and not self.hosts.lost(host):
                        await asyncio.sleep(RETRY_S)  # a slow or briefly unreachable host: ask again
                        continue
                    why = f"host {host} lost" if self.hosts.lost(host) else exc.message
                    metrics.FAILURES.labels("session_remote").inc()
                    log.warning("session_lost", session=sid, host=host, error=why)
                    output.feed_data(f"\n[hive] the session's output ended early: {why}\n".encode())
                    return None
                if got.data:
                    output.feed_data(got.data)
                    offset += len(got.data)
                if got.done:
                    return got.rc
        finally:
            output.feed_eof()

    async def _fetch_outputs(self, sid: str, host: str) -> bool:
        """Bring the output dir home (checked), then drop the host's copy; False (logged) when it fails."""
        tid = uuid.uuid4().hex
        layout = self.sessions.layout
        try:
            packed: PackReply = await self.client.request(
                ops.HOST_SESSION_PACK, HostSessionRef(session_id=sid, transfer=tid), host=host, timeout=300.0)
            fd, name = tempfile.mkstemp(prefix="session-in-", dir=transfer.moves_dir(layout))
            tmp = Path(name)
            try:
                with os.fdopen(fd, "wb") as f:
                    offset = 0
                    while offset < packed.size:
                        chunk = await self.client.request(
                            ops.HOST_READ, ChunkRequest(transfer=tid, offset=offset, length=transfer.CHUNK),
                            host=host, timeout=60.0)
                        if not chunk.data:
                            raise HiveError("conflict", f"the outputs ended at {offset} of {packed.size} bytes")
                        f.write(chunk.data)
                        offset += len(chunk.data)
                files = await asyncio.to_thread(transfer.unpack_session, layout, sid, tmp, packed)
            finally:
                await asyncio.to_thread(tmp.unlink, missing_ok=True)
        except HiveError as exc:
            metrics.FAILURES.labels("session_outputs").inc()
            log.warning("session_outputs_not_fetched", session=sid, host=host, error=exc.message)
            self._note(sid, f"[hive] the outputs could not be fetched from host {host}: {exc.message}")
            return False
        log.info("session_outputs_fetched", session=sid, host=host, files=files, bytes=packed.size)
        try:
            await self.client.request(ops.HOST_SESSION_DROP, HostSessionRef(session_id=sid, transfer=tid),
                                      host=host, timeout=60.0)
        except HiveError as exc:  # the outputs are home; the host's copy is stale and safe to delete
            log.warning("session_not_dropped", session=sid, host=host, error=exc.message)
        return True
