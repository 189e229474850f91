"""Sessions placed on this host (`hive session create --host <me>`).

The deployer keeps the session's row, log and outputs on the core host; here
its command runs in this host's `HIVE_HOME/sessions/<uuid>/` with the output
dir `session-output/<uuid>/`, built and confined exactly as the deployer does
it for a local session (`hive_deployer.sessions.session_launch` and `spawn`:
the runtime's one-off sandbox, only those two dirs writable, no NATS user).

What the command writes (stdout and stderr) is kept as it came in
`sessions/<uuid>/output.raw`; the deployer pulls it from an offset
(`session_read`, which waits up to READ_WAIT_S for more, so the pull is a
long-poll, not a busy loop) and renders `session.log`, `session.jsonl` and the
cost from it as for a local run. Once it has read the end it fetches the
output dir (`session_pack`, then the moves' `read`) and drops this host's
copy (`session_drop`).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from hive_deployer import sessions, transfer
from hive_deployer.layout import Layout, check_session_id, wipe
from hive_deployer.runtimes import Runtime
from hivewire.errors import HiveError
from hivewire.settings import Settings
from hivewire.tasks import cancel_and_wait
from hivewire.wire.hosts import HostSessionOutput, HostSessionRef, HostSessionStart, HostSessionStarted, PackReply

log = structlog.get_logger("hive_agenthost.sessions")
READ_WAIT_S = 2.0
PIPE_READ = 64 * 1024


@dataclass
class Run:
    proc: asyncio.subprocess.Process
    raw: Path
    rc: int | None = None
    done: bool = False
    grew: asyncio.Event = field(default_factory=asyncio.Event)
    pump: asyncio.Task[None] | None = None


class HostSessions:
    def __init__(self, layout: Layout, runtime: Runtime, settings: Settings, nats_url: str, host: str) -> None:
        self.layout, self.runtime, self.settings, self.nats_url, self.host = layout, runtime, settings, nats_url, host
        self.runs: dict[str, Run] = {}

    def _run(self, sid: str) -> Run:
        run = self.runs.get(check_session_id(sid))
        if run is None:  # e.g. this agent host restarted while it ran
            raise HiveError("not_found", f"no session {sid} on host {self.host}")
        return run

    async def start(self, req: HostSessionStart) -> HostSessionStarted:
        sid = check_session_id(req.session_id)
        if sid in self.runs:  # idempotent: the deployer's retry of a start whose reply was lost
            return HostSessionStarted(session_id=sid, pid=self.runs[sid].proc.pid)
        d = self.layout.session_dir(sid)
        d.mkdir(parents=True, exist_ok=True)
        self.layout.session_output(sid).mkdir(parents=True, exist_ok=True)
        launch = sessions.session_launch(self.layout, self.settings, sid, req.task, req.priority, req.metadata,
                                         req.args, self.nats_url)
        try:
            proc = await sessions.spawn(self.runtime, launch)
        except OSError as exc:
            log.warning("session_start_failed", session=sid, error=str(exc))
            return HostSessionStarted(session_id=sid, error=str(exc))
        run = Run(proc, d / "output.raw")
        run.raw.touch()
        self.runs[sid] = run
        run.pump = asyncio.create_task(self._pump(sid, run), name=f"session-{sid[:8]}")
        log.info("session_started", session=sid, pid=proc.pid)
        return HostSessionStarted(session_id=sid, pid=proc.pid)

    async def _pump(self, sid: str, run: Run) -> None:
        assert run.proc.stdout is not None
        with open(run.raw, "ab") as f:
            while chunk := await run.proc.stdout.read(PIPE_READ):
                f.write(chunk)
                f.flush()
                run.grew.set()
        run.rc = await run.proc.wait()
        run.done = True
        run.grew.set()
        log.info("session_ended", session=sid, rc=run.rc)

    async def read(self, req: HostSessionRef) -> HostSessionOutput:
        run = self._run(req.session_id)
        offset = max(0, req.offset)
        if not run.done:
            run.grew.clear()  # before looking at the size: a write after the look sets it again
        if not run.done and run.raw.stat().st_size <= offset:
            try:
                await asyncio.wait_for(run.grew.wait(), READ_WAIT_S)
            except TimeoutError:
                pass
        done = run.done  # read before the file: all of it is written once done is set
        with open(run.raw, "rb") as f:
            f.seek(offset)
            data = f.read(transfer.CHUNK)
        size = offset + len(data)
        end = done and size >= run.raw.stat().st_size
        return HostSessionOutput(session_id=req.session_id, offset=offset, data=data, done=end,
                                 rc=run.rc if end else None)

    async def pack(self, req: HostSessionRef) -> PackReply:
        run = self._run(req.session_id)
        if not run.done:
            raise HiveError("conflict", f"session {req.session_id} is still running on {self.host}")
        return await asyncio.to_thread(transfer.pack_session, self.layout, req.session_id, req.transfer)

    async def drop(self, req: HostSessionRef) -> None:
        sid = check_session_id(req.session_id)
        run = self.runs.pop(sid, None)
        if run is not None and not run.done:
            _kill(run)
            await cancel_and_wait(run.pump)
        if req.transfer:
            await asyncio.to_thread(transfer.drop_transfer, self.layout, req.transfer)
        for d in (self.layout.session_dir(sid), self.layout.session_output(sid)):
            await asyncio.to_thread(wipe, d)

    async def stop(self) -> None:
        for run in self.runs.values():
            if not run.done:
                _kill(run)
        await cancel_and_wait(*(r.pump for r in self.runs.values()))


def _kill(run: Run) -> None:
    try:
        os.killpg(run.proc.pid, 15)
    except ProcessLookupError:
        pass
