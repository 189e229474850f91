"""`hive agents ...` and `hive session ...` (registered through the `hive.cli` entry point)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import TypeVar

import typer

from hivewire.cli.app import JSON_HELP, console, err_console, print_json, print_rows, run_client
from hivewire.errors import HiveError
from hivewire.service import HiveClient
from hivewire.wire import ops
from hivewire.wire.agent import AgentState
from hivewire.wire.common import Empty
from hivewire.wire.deployer import (
    AgentInfo,
    AgentList,
    ArchiveReply,
    CleanupReply,
    DeployReply,
    DeployRequest,
    DestroyRequest,
    ExportRequest,
    ImportRequest,
    NameRequest,
    SessionCleanup,
    SessionCreate,
    SessionInfo,
    SessionList,
    SessionRef,
    SpawnRequest,
)
from hivewire.wire.op import Op

LONG = 300.0  # deploys and spawns build and probe: allow minutes, not seconds
Req = TypeVar("Req")
Rep = TypeVar("Rep")


def _call(op: Op[Req, Rep], req: Req, timeout: float = 60.0, **params: str) -> Rep:
    """One request of the contract from the CLI (`params`: the op's `agent=` / `host=`)."""
    async def go(c: HiveClient) -> Rep:
        return await c.request(op, req, timeout=timeout, **params)

    return run_client(go, timeout=timeout)


def _age(ts: float | None) -> str:
    import time

    if not ts:
        return "-"
    s = time.time() - ts
    return f"{s / 86400:.1f}d" if s > 86400 else f"{s / 3600:.1f}h" if s > 3600 else f"{s:.0f}s"


def _line(a: AgentInfo) -> str:
    """One readable line about an agent after a lifecycle verb."""
    state = f"{_state(a)} ({a.transient})" if a.transient else _state(a)
    pid = f", pid {a.pid}" if a.pid else ""
    pid += f", on {a.host}" if a.host else ""
    err = f"; last error: {a.last_error}" if a.last_error else ""
    unconfined = " (UNCONFINED: no sandbox)" if not a.confined else ""
    return f"{a.name}: {state}{pid}, runtime {a.runtime}{unconfined}{err}"


def _state(a: AgentInfo) -> str:
    """`dead (host lost)` for an agent whose host stopped heartbeating (issue 26)."""
    return "dead (host lost)" if a.host_lost else a.state


def _show(a: AgentInfo, as_json: bool) -> None:
    print_json(a) if as_json else console.print(_line(a), markup=False, highlight=False)


def agent_states(names: list[str]) -> dict[str, AgentState]:
    """Each running agent's own state from its harness (2 s each, in parallel); none when NATS is away."""
    if not names:
        return {}

    async def go() -> dict[str, AgentState]:
        from hivewire.cli.app import settings
        from hivewire.nats_transport import NatsTransport
        from hivewire.runner import resolve_nats_url

        t = await asyncio.wait_for(NatsTransport.connect(resolve_nats_url(settings()), name="hive-cli",
                                                         forever=False), 5.0)
        try:
            c = HiveClient(t, timeout=2.0)

            async def one(name: str) -> AgentState | None:
                try:
                    return await c.request(ops.CTL_STATE, Empty(), timeout=2.0, agent=name)
                except Exception:  # that agent's harness is away or busy: its status shows as -
                    return None

            got = await asyncio.gather(*(one(n) for n in names))
            return {n: st for n, st in zip(names, got, strict=True) if st is not None}
        finally:
            await t.close()

    try:
        return asyncio.run(go())
    except Exception:
        return {}


def _status(st: AgentState | None) -> str:
    """online, needs_login (token_expired), rate_limited until 14:05, stalled, ...; `-` if unknown."""
    if st is None:
        return "-"
    if st.turn_state == "stalled":
        return "stalled"
    if st.status == "needs_login":
        return f"needs_login ({st.login_reason})" if st.login_reason else "needs_login"
    if st.rate_limited_until:
        return "rate_limited until " + time.strftime("%H:%M", time.localtime(st.rate_limited_until))
    return st.status


NAME = typer.Argument(..., help="The agent's name (lowercase letters, digits and '-').")
JSON = typer.Option(False, "--json", help="Print the reply as JSON.")
SID = typer.Argument(..., help="The session id (`hive session create` printed it).")


def register(app: typer.Typer) -> None:
    agents = typer.Typer(help="Agents: spawn, list, start/stop, deploy config, destroy.", no_args_is_help=True)
    session = typer.Typer(help="Sessions: one-off tasks run for external systems.", no_args_is_help=True)
    app.add_typer(agents, name="agents")
    app.add_typer(session, name="session")

    @agents.command("list")
    def list_(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
        """Agents and tombstones (destroyed agents with kept state)."""
        got: AgentList = _call(ops.DEPLOYER_LIST, Empty())
        if as_json:
            print_json(got)
            return
        states = agent_states([a.name for a in got.agents if a.state == "running"])
        print_rows(("name", "state", "transient", "runtime", "pid", "deployed", "restarts", "size", "creds", "age",
                    "status", "host"), (
            (a.name, _state(a), a.transient or "-", a.runtime if a.confined else f"{a.runtime} UNCONFINED",
             str(a.pid or "-"), a.deployed or "-", str(a.restarts),
             f"{a.state_bytes / 1024:.0f}K", "yes" if a.has_credentials else "no",
             _age(a.destroyed_at if a.state == "destroyed" else a.created_at), _status(states.get(a.name)),
             a.host or "-")
            for a in got.agents),
            empty="no agents (spawn one with `hive agents spawn NAME`)")

    @agents.command("spawn")
    def spawn(name: str = NAME, runtime: str = typer.Option(None, help="Must match the deployer's runtime."),
              host: str = typer.Option(None, help="The host to run it on (`hive hosts`); default: the host with "
                                                  "the most free capacity."),
              as_json: bool = JSON) -> None:
        """Create a new agent from the template and start it."""
        _show(_call(ops.DEPLOYER_SPAWN, SpawnRequest(name=name, runtime=runtime, host=host), timeout=LONG),
              as_json)

    def verb(op: Op[NameRequest, AgentInfo], doc: str) -> None:
        def cmd(name: str = NAME, as_json: bool = JSON) -> None:
            _show(_call(op, NameRequest(name=name), timeout=LONG), as_json)

        cmd.__doc__ = doc
        agents.command(op.name)(cmd)

    for op, doc in ((ops.DEPLOYER_START, "Start a stopped agent."), (ops.DEPLOYER_STOP, "Stop an agent (graceful)."),
                    (ops.DEPLOYER_RESTART, "Stop and start an agent."),
                    (ops.DEPLOYER_KILL, "SIGKILL an agent (no crash restart)."),
                    (ops.DEPLOYER_REBUILD, "Re-render an agent's meta config and restart it on the deployed config."),
                    (ops.DEPLOYER_REVIVE, "Bring a destroyed agent back with its kept state and login.")):
        verb(op, doc)

    @agents.command("move", short_help="Move a stopped agent's state and login to another host.")
    def move(name: str = NAME, to: str = typer.Option(..., "--to", help="The host to move it to (`hive hosts`)."),
             as_json: bool = JSON) -> None:
        """Move a stopped agent's state/ and creds/ to another host through the hive (checked by sha256; the
        source keeps its copy until the target confirms). Start it there with `hive agents start`."""
        from hivewire.wire.hosts import MoveRequest

        _show(_call(ops.HOSTS_MOVE, MoveRequest(name=name, to=to), timeout=LONG), as_json)

    @agents.command("resume")
    def resume(name: str = NAME) -> None:
        """Lift a runaway park (the harness's ctl.resume); budget parks lift when the budget allows."""
        rep = _call(ops.CTL_RESUME, Empty(), timeout=10.0, agent=name)
        console.print(f"{name}: resumed" if rep.ok else f"{name}: was not parked as a runaway",
                      markup=False, highlight=False)

    @agents.command("destroy")
    def destroy(name: str = NAME,
                purge: bool = typer.Option(False, "--purge/--keep",
                                           help="Wipe its state, credentials and repos too (no undo); "
                                                "default: keep them as a tombstone."),
                yes: bool = typer.Option(False, "--yes", help="Do not ask before purging."),
                as_json: bool = JSON) -> None:
        """Stop an agent and keep its state as a tombstone (or wipe everything with --purge)."""
        if purge and not yes and not typer.confirm(f"Purge {name}: wipe its state, creds and repos? No undo."):
            raise typer.Exit(1)
        a: AgentInfo = _call(ops.DEPLOYER_DESTROY, DestroyRequest(name=name, purge=purge), timeout=LONG)
        if as_json:
            print_json(a)
        elif purge or a.purged:
            console.print(f"{a.name}: purged (state, credentials and repos wiped)", markup=False, highlight=False)
        else:
            console.print(f"{a.name}: destroyed; state kept as a tombstone "
                          f"(`hive agents revive {a.name}` brings it back)", markup=False, highlight=False)

    @agents.command("init-config")
    def init_config(name: str = NAME) -> None:
        """Create agents/<name>/config from the template (prints its path)."""
        console.print(_call(ops.DEPLOYER_INIT_CONFIG, NameRequest(name=name)).path,
                      markup=False, highlight=False)

    def _deploy_line(r: DeployReply, as_json: bool) -> None:
        if as_json:
            print_json(r)
            return
        sha = f" {r.sha[:12]}" if r.sha else ""
        err = f": {r.error}" if r.error else ""
        console.print(f"{r.name} deploy {r.id}: {r.outcome}{sha}{err}", markup=False, highlight=False)

    @agents.command("propose")
    def propose(name: str = NAME, deploy_id: str = typer.Argument(..., help="An id for this deploy."),
                commit_ref: str = typer.Argument(..., help="The config repo commit to deploy."),
                as_json: bool = JSON) -> None:
        """Copy a config commit into applied/<name> and tag proposal/<id>."""
        _deploy_line(_call(ops.DEPLOYER_PROPOSE, DeployRequest(name=name, id=deploy_id, commit_ref=commit_ref)),
                     as_json)

    @agents.command("approve")
    def approve(name: str = NAME, deploy_id: str = typer.Argument(..., help="The proposal's id."),
                commit_ref: str = typer.Option(None, help="Deploy this commit instead of the proposal's."),
                as_json: bool = JSON) -> None:
        """Build and deploy proposal/<id> now (operator-direct; approvals in the broker run by themselves)."""
        r: DeployReply = _call(ops.DEPLOYER_APPROVE, DeployRequest(name=name, id=deploy_id, commit_ref=commit_ref),
                               timeout=LONG)
        _deploy_line(r, as_json)
        if r.outcome == "failed":
            raise typer.Exit(1)

    @agents.command("deny")
    def deny(name: str = NAME, deploy_id: str = typer.Argument(..., help="The proposal's id."),
             note: str = typer.Option(None, help="Why (the agent sees it)."), as_json: bool = JSON) -> None:
        """Refuse proposal/<id>."""
        _deploy_line(_call(ops.DEPLOYER_DENY, DeployRequest(name=name, id=deploy_id, note=note)),
                     as_json)

    @agents.command("export")
    def export(name: str = NAME, path: str = typer.Argument(..., help="The .tar.gz to write."),
               with_creds: bool = typer.Option(False, "--with-creds", help="Include the agent's login credentials.")
               ) -> None:
        """Write one agent (config, applied, state; creds only if asked) to a .tar.gz on the deployer host."""
        r: ArchiveReply = _call(ops.DEPLOYER_EXPORT,
                                ExportRequest(name=name, path=os.path.abspath(path), include_creds=with_creds),
                                timeout=LONG)
        console.print(f"{r.path} ({r.bytes} bytes)", markup=False, highlight=False)

    @agents.command("import")
    def import_(path: str = typer.Argument(..., help="A .tar.gz written by `hive agents export`."),
                name: str = typer.Option(None, help="Import under a new name."),
                force: bool = typer.Option(False, "--force", help="Replace an existing agent."),
                as_json: bool = JSON) -> None:
        """Create an agent from an exported .tar.gz."""
        _show(_call(ops.DEPLOYER_IMPORT, ImportRequest(path=os.path.abspath(path), name=name, force=force),
                    timeout=LONG), as_json)

    @session.command("create")
    def s_create(task: str = typer.Argument(..., help="What the session should do."),
                 priority: str = typer.Argument("medium", help="high, medium or low."),
                 metadata: str = typer.Argument("{}", help="A JSON object kept with the session."),
                 host: str = typer.Option("", "--host", help="Run it on this agent host (default: the core host); "
                                                             "its log and outputs come back here.")) -> None:
        """Create a session: prints its id on stdout and its metadata JSON on stderr."""
        try:
            meta = json.loads(metadata) if metadata not in ("", "null") else {}
        except json.JSONDecodeError as exc:
            err_console.print(f"[red]error[/red] metadata is not JSON: {exc}")
            raise typer.Exit(2) from None
        if priority not in ("high", "medium", "low"):
            err_console.print("[red]error[/red] priority must be high, medium or low")
            raise typer.Exit(2)
        s: SessionInfo = _call(ops.SESSION_CREATE, SessionCreate(task=task, priority=priority,  # type: ignore[arg-type]
                                                                 metadata=meta, host=host))
        print(s.session_id)
        import sys

        import msgspec

        sys.stderr.write(msgspec.json.encode(s).decode() + "\n")

    @session.command("start")
    def s_start(session_id: str = SID,
                args: list[str] = typer.Argument(None, help="Extra arguments for the session's command.")) -> None:
        """Start a created session (prints its status)."""
        print(_call(ops.SESSION_START, SessionRef(session_id=session_id, args=args or [])).status)

    @session.command("status")
    def s_status(session_id: str = SID) -> None:
        """Print a session's status (created, running, completed, failed, not_found)."""
        print(_call(ops.SESSION_STATUS, SessionRef(session_id=session_id)).status)

    @session.command("get")
    def s_get(session_id: str = SID) -> None:
        """Print everything about one session as JSON."""
        print_json(_call(ops.SESSION_GET, SessionRef(session_id=session_id)))

    @session.command("list")
    def s_list(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
        """Every session, with status, what it cost (dollars, from its CLI's result) and task."""
        got: SessionList = _call(ops.SESSION_LIST, Empty())
        if as_json:
            print_json(got)
            return
        print_rows(("session", "status", "priority", "age", "cost", "task"),
                   ((x.session_id, x.status, x.priority, _age(x.created),
                     f"${x.cost_usd:.4f}" if x.cost_usd or x.tokens else "-", x.task) for x in got.sessions),
                   empty="no sessions")

    @session.command("output-dir")
    def s_output(session_id: str = SID) -> None:
        """Print the directory a session writes its results to."""
        print(_call(ops.SESSION_OUTPUT_DIR, SessionRef(session_id=session_id)).path)

    @session.command("log")
    def s_log(session_id: str = SID) -> None:
        """Print the path of a session's log file."""
        print(_call(ops.SESSION_LOG, SessionRef(session_id=session_id)).path)

    @session.command("cleanup")
    def s_cleanup(max_age_hours: float = typer.Argument(24.0, help="Remove sessions older than this."),
                  remove_outputs: bool = typer.Option(False, "--remove-outputs", help="Delete their outputs too."),
                  as_json: bool = JSON) -> None:
        """Remove completed/failed sessions older than N hours (outputs kept unless --remove-outputs)."""
        r: CleanupReply = _call(ops.SESSION_CLEANUP,
                                SessionCleanup(max_age_hours=max_age_hours, remove_outputs=remove_outputs))
        if as_json:
            print_json(r)
        else:
            kept = "outputs kept" if r.kept_outputs else "outputs removed"
            print(f"removed {len(r.removed)} session(s); {kept}")


__all__ = ["HiveError", "register"]
