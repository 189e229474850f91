"""Sessions for external systems: isolated, ephemeral agents.

A session has its own dir `sessions/<uuid>/` (session.json, its own
events.sqlite and work files), an output dir `session-output/<uuid>/` that
outlives cleanup unless asked, and a log `sessions/<uuid>/session.log`.
States: created -> starting -> running -> completed | failed; unknown ids
are `not_found`. Metadata is stored as real JSON (a CHECK(json_valid) column).

`start` runs the agent CLI non-interactively on the task
(`$HIVE_SESSION_CMD`, or `$HIVE_AGENT_CMD -p <task>` with `--add-dir
<output dir>`, `--permission-mode acceptEdits` and a system-prompt line
naming the output dir, so the headless CLI may and knows to write its
results there; plus the caller's args) in the deployer's runtime, with only
the session and output dirs writable; exit code 0 means completed.
Sessions do not talk to NATS: they get `HIVE_NATS_CREDS=none` and, under
bwrap, cannot see HIVE_HOME/nats.

The CLI runs with `--output-format stream-json --verbose`: the deployer reads
its events (`sessionout`), writes them readable to `session.log` and as they
came to `session.jsonl`, and takes the session's cost from the final `result`
event. The cost is stored on the session row (`get`, `status`) and sent to the
cost ledger as one `TurnStats` row on `hive.session.ledger` (JetStream,
`Nats-Msg-Id: session-<uuid>`); the row waits in `deployer.sqlite`
(`ledger_pending`) until the stream acked it, and is retried (1 s doubling to
30 s, and at start), so the ledger counts each session once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog

from hive_deployer import metrics, sessionout
from hive_deployer.layout import Layout, check_session_id, wipe
from hive_deployer.runtimes import Launch, Runtime
from hive_deployer.store import Store
from hivewire import codec, config
from hivewire.errors import HiveError
from hivewire.procs import die_with_parent
from hivewire.settings import Settings
from hivewire.tasks import cancel_and_wait
from hivewire.wire import ops
from hivewire.wire.agent import TurnStats
from hivewire.wire.deployer import CleanupReply, SessionInfo, SessionList, StatusReply

if TYPE_CHECKING:
    from hive_deployer.sessionhost import RemoteSessions

log = structlog.get_logger("hive_deployer.sessions")
MAX_TASK = 20_000
MAX_ARGS = 64
# Told to the agent CLI of a session: a headless run cannot ask where its results go.
OUTPUT_NOTE = ("You run as an isolated hive session. Write every result file into the output directory {out} "
               "(the caller collects it from there); your working directory is scratch space.")
LEDGER_RETRY_MIN_S, LEDGER_RETRY_MAX_S = 1.0, 30.0
PUBLISH_TIMEOUT_S = 5.0
# `(msg_id, TurnStats bytes)` -> published on hive.session.ledger and acked by the stream, or raises
LedgerPublish = Callable[[str, bytes], Awaitable[None]]


def jetstream_publisher(nc: Any) -> LedgerPublish:
    """Publish a session's ledger row on the ledger's stream; returns once the stream acked it."""
    async def publish(msg_id: str, row: bytes) -> None:
        await nc.jetstream().publish(ops.SESSION_LEDGER.subject_for(), row, timeout=PUBLISH_TIMEOUT_S,
                                     headers={"Nats-Msg-Id": msg_id})

    return publish


def command(layout: Layout, settings: Settings, sid: str, task: str, args: list[str]) -> list[str]:
    """`$HIVE_SESSION_CMD`, or the agent CLI headless on the task, allowed to write its output dir."""
    raw = config.SESSION_CMD.get()
    if raw:
        base = shlex.split(raw)
    else:
        out = str(layout.session_output(sid))
        base = [*shlex.split(settings.agent_cmd), "-p", task, "--output-format", "stream-json", "--verbose",
                "--add-dir", out,
                "--permission-mode", "acceptEdits", "--append-system-prompt", OUTPUT_NOTE.format(out=out)]
    return [*base, *args]


def session_launch(layout: Layout, settings: Settings, sid: str, task: str, priority: str,
                   metadata: dict[str, Any], args: list[str], nats_url: str) -> Launch:
    """A session's run in `layout`'s HIVE_HOME (the core host's, or an agent host's for a placed session)."""
    if len(args) > MAX_ARGS or any(not isinstance(a, str) or "\0" in a for a in args):
        raise HiveError("bad_request", "bad session args")
    d, out = layout.session_dir(sid), layout.session_output(sid)
    env = {
        "HIVE_SESSION_ID": sid, "HIVE_SESSION_TASK": task, "HIVE_SESSION_PRIORITY": priority,
        "HIVE_SESSION_DIR": str(d), "HIVE_SESSION_OUTPUT": str(out), "HIVE_EVENTS_DB": str(d / "events.sqlite"),
        "HIVE_NATS_URL": nats_url, "HIVE_SESSION_METADATA": json.dumps(metadata),
        # A session has no NATS user (it is a headless CLI run, no hive tools): it must never
        # fall back to the operator's or inherit the deployer's credentials.
        "HIVE_NATS_CREDS": "none",
    }
    return Launch(f"session-{sid[:8]}", command(layout, settings, sid, task, args), env, d, writable=[d, out],
                  hidden=[settings.home])


async def spawn(runtime: Runtime, launch: Launch) -> asyncio.subprocess.Process:
    """Start a session's command in `runtime`, confined as an agent's turn (fails closed: OSError)."""
    why = await asyncio.to_thread(runtime.check)
    if why is not None:  # fail closed, as for agents
        raise OSError(f"the {runtime.kind} runtime cannot run it: {why}")
    argv = runtime.oneoff_argv(launch, passed=sorted(k for k in launch.env if k.startswith("HIVE_SESSION_")))
    return await asyncio.create_subprocess_exec(
        *argv, env=runtime.env(launch), cwd=str(launch.cwd),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True, preexec_fn=die_with_parent,
    )


class Sessions:
    def __init__(self, layout: Layout, store: Store, runtime: Runtime, settings: Settings, nats_url: str = "") -> None:
        self.layout, self.store, self.runtime, self.settings = layout, store, runtime, settings
        self.nats_url = nats_url
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self.publish_ledger: LedgerPublish | None = None  # set by the service (None: rows wait)
        self.remote: RemoteSessions | None = None  # sessions placed on agent hosts (set by the service)
        self._ledger_kick = asyncio.Event()
        self._ledger_task: asyncio.Task[None] | None = None

    def _info(self, r: dict[str, Any]) -> SessionInfo:
        sid = r["session_id"]
        d = self.layout.session_dir(sid)
        return SessionInfo(
            session_id=sid, task=r["task"], priority=r["priority"], status=r["status"], created=r["created"],
            updated=r["updated"], working_dir=str(d), output_dir=str(self.layout.session_output(sid)),
            database=str(d / "events.sqlite"), log_file=str(self.layout.session_log(sid)),
            metadata=json.loads(r["metadata_json"]), exit_code=r["exit_code"], cost_usd=r.get("cost_usd") or 0.0,
            model_costs=json.loads(r.get("model_costs_json") or "{}"), tokens=r.get("tokens") or 0,
            host=r.get("host") or "",
        )

    async def _row(self, sid: str) -> dict[str, Any] | None:
        rows = await self.store.sessions(check_session_id(sid))
        return rows[0] if rows else None

    async def get(self, sid: str) -> SessionInfo:
        r = await self._row(sid)
        if r is None:
            raise HiveError("not_found", f"no session {sid}")
        return self._info(r)

    async def status(self, sid: str) -> StatusReply:
        try:
            r = await self._row(sid)
        except HiveError:
            r = None
        if r is None:
            return StatusReply(session_id=sid, status="not_found")
        return StatusReply(session_id=sid, status=r["status"], cost_usd=r.get("cost_usd") or 0.0,
                           tokens=r.get("tokens") or 0)

    async def list(self) -> SessionList:
        return SessionList(sessions=[self._info(r) for r in await self.store.sessions()])

    async def _write_json(self, sid: str) -> None:
        info = await self.get(sid)
        (self.layout.session_dir(sid) / "session.json").write_bytes(codec.encode(info) + b"\n")

    async def create(self, task: str, priority: str, metadata: dict[str, Any], host: str = "") -> SessionInfo:
        if not task.strip():
            raise HiveError("bad_request", "task is required")
        if len(task) > MAX_TASK:
            raise HiveError("too_large", f"task is longer than {MAX_TASK} characters")
        if not isinstance(metadata, dict):
            raise HiveError("bad_request", "metadata must be a JSON object")
        if host:
            if self.remote is None:
                raise HiveError("unavailable", "this deployer runs sessions on its own host only")
            host = self.remote.check_host(host)
        sid = str(uuid.uuid4())
        d = self.layout.session_dir(sid)
        d.mkdir(parents=True)
        self.layout.session_output(sid).mkdir(parents=True)
        self.layout.session_log(sid).touch()
        await self.store.add_session(sid, task, priority, metadata, host)
        await self._write_json(sid)
        metrics.SESSIONS.labels("created").inc()
        return await self.get(sid)

    def command(self, sid: str, task: str, args: list[str]) -> list[str]:
        return command(self.layout, self.settings, sid, task, args)

    async def start(self, sid: str, args: list[str]) -> StatusReply:
        if len(args) > MAX_ARGS or any(not isinstance(a, str) or "\0" in a for a in args):
            raise HiveError("bad_request", "bad session args")
        info = await self.get(sid)
        if not await self.store.set_session_status(sid, "starting", expect=("created",)):
            raise HiveError("conflict", f"session {sid} is {info.status}, not created")
        metrics.SESSIONS.labels("starting").inc()
        await self._write_json(sid)
        if info.host:  # placed on an agent host: run there, read its output from here
            assert self.remote is not None
            return await self.remote.start(info, args)
        launch = session_launch(self.layout, self.settings, sid, info.task, info.priority, info.metadata, args,
                                self.nats_url)
        try:
            proc = await spawn(self.runtime, launch)
        except OSError as exc:
            with open(self.layout.session_log(sid), "a") as f:
                f.write(f"start failed: {exc}\n")
            await self._finish(sid, None, "failed")
            return await self.status(sid)
        self.procs[sid] = proc
        assert proc.stdout is not None

        async def ended() -> int | None:
            rc = await proc.wait()
            self.procs.pop(sid, None)
            return rc

        return await self.running(sid, proc.stdout, ended)

    async def running(self, sid: str, output: asyncio.StreamReader,
                      ended: Callable[[], Awaitable[int | None]]) -> StatusReply:
        """The run has started: watch `output` to its end, then `ended()` gives its exit code."""
        await self.store.set_session_status(sid, "running", expect=("starting",))
        metrics.SESSIONS.labels("running").inc()
        await self._write_json(sid)
        t = asyncio.create_task(self._watch(sid, output, ended, time.time()))
        self._watchers.add(t)
        t.add_done_callback(self._watchers.discard)
        return await self.status(sid)

    async def _watch(self, sid: str, output: asyncio.StreamReader, ended: Callable[[], Awaitable[int | None]],
                     started: float) -> None:
        out = sessionout.Outcome()
        try:
            with open(self.layout.session_log(sid), "ab") as logf, \
                    open(self.layout.session_dir(sid) / "session.jsonl", "ab") as evf:
                await sessionout.pump(output, logf, evf, out)
        except OSError as exc:  # the log is gone or the disk full: read on (a full pipe would stall the run)
            metrics.FAILURES.labels("session_output").inc()
            log.warning("session_output_failed", session=sid, error=str(exc))
            with open(os.devnull, "wb") as null:
                await sessionout.pump(output, null, null, out)
        rc = await ended()
        await self._finish(sid, rc, "completed" if rc == 0 else "failed", out, started)

    async def _finish(self, sid: str, rc: int | None, status: str, out: sessionout.Outcome | None = None,
                      started: float = 0.0) -> None:
        if out is not None and out.got_result:
            await self._record_cost(sid, rc, out, started)
        await self.store.set_session_status(sid, status, exit_code=rc)
        metrics.SESSIONS.labels(status).inc()
        if status == "failed":
            metrics.FAILURES.labels("session").inc()
        log.info("session_finished", session=sid, status=status, rc=rc)
        await self._write_json(sid)

    async def _record_cost(self, sid: str, rc: int | None, out: sessionout.Outcome, started: float) -> None:
        """Store what the run cost and queue its ledger row (agent '', session = its id) for the stream."""
        now = time.time()
        row = TurnStats(
            agent="", session=sid, turn_id=f"session-{sid}", model=out.model, wake_from="session",
            result_kind="ok" if rc == 0 and not out.is_error else "failed", started_at=started or now,
            ended_at=now, duration_ms=int((now - (started or now)) * 1000), input_tokens=out.input_tokens,
            output_tokens=out.output_tokens, cache_read_input_tokens=out.cache_read_input_tokens,
            cache_creation_input_tokens=out.cache_creation_input_tokens, cost_usd=out.cost_usd,
            model_costs=out.model_costs,
        )
        await self.store.set_session_cost(sid, out.cost_usd, out.model_costs, out.tokens, codec.encode(row))
        log.info("session_cost", session=sid, cost_usd=out.cost_usd, tokens=out.tokens)
        self._ledger_kick.set()

    # --- the ledger ---------------------------------------------------------
    def start_ledger(self, publish: LedgerPublish) -> None:
        """Send finished sessions' ledger rows (those left from before too), retrying until acked."""
        self.publish_ledger = publish
        self._ledger_kick.set()
        self._ledger_task = asyncio.create_task(self._ledger_loop(), name="session-ledger")

    async def flush_ledger(self) -> bool:
        """Publish every pending ledger row; True when none is left."""
        if self.publish_ledger is None:
            return False
        for sid, row in await self.store.ledger_pending():
            try:
                await self.publish_ledger(f"session-{sid}", row)
            except Exception as exc:  # no stream yet, nats-server away, timeout: stays pending
                metrics.FAILURES.labels("session_ledger").inc()
                log.warning("session_ledger_publish_failed", session=sid, error=str(exc) or type(exc).__name__)
                return False
            await self.store.ledger_sent(sid)
        return True

    async def _ledger_loop(self) -> None:
        while True:
            await self._ledger_kick.wait()
            self._ledger_kick.clear()
            delay = LEDGER_RETRY_MIN_S
            while not await self.flush_ledger():
                await asyncio.sleep(delay)
                delay = min(delay * 2, LEDGER_RETRY_MAX_S)

    async def cleanup(self, max_age_hours: float, remove_outputs: bool) -> CleanupReply:
        if max_age_hours < 0:
            raise HiveError("bad_request", "max_age_hours must be >= 0")
        cutoff = time.time() - max_age_hours * 3600
        removed = []
        await self.flush_ledger()  # a session's cost reaches the ledger before its row goes
        for r in await self.store.sessions():
            if r["status"] in ("completed", "failed") and r["updated"] <= cutoff:
                sid = r["session_id"]
                await asyncio.to_thread(wipe, self.layout.session_dir(sid))
                if remove_outputs:
                    await asyncio.to_thread(wipe, self.layout.session_output(sid))
                await self.store.delete_session(sid)
                removed.append(sid)
        return CleanupReply(removed=removed, kept_outputs=not remove_outputs)

    async def recover(self) -> None:
        """At start: a session that was starting/running when the deployer died has failed."""
        for r in await self.store.sessions():
            if r["status"] in ("starting", "running") and r["session_id"] not in self.procs:
                with open(self.layout.session_log(r["session_id"]), "a") as f:
                    f.write("deployer restarted while this session ran: marked failed\n")
                await self._finish(r["session_id"], None, "failed")

    async def stop(self) -> None:
        for proc in list(self.procs.values()):
            if proc.returncode is None:
                try:
                    os.killpg(proc.pid, 15)
                except ProcessLookupError:
                    pass
        if self._watchers:
            await asyncio.wait(set(self._watchers), timeout=5)
        if self._ledger_task is not None:
            await self.flush_ledger()  # what the stopped sessions cost, if the stream takes it now
            await cancel_and_wait(self._ledger_task)
            self._ledger_task = None
