"""`hive agents ...` and `hive session ...` (registered through the `hive.cli` entry point)."""

from __future__ import annotations

import json
import os
from typing import Any

import typer
from rich.table import Table

from hivewire import subjects
from hivewire.cli.app import console, err_console, print_json, run_client
from hivewire.errors import HiveError
from hivewire.service import HiveClient
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
    PathReply,
    SessionCleanup,
    SessionCreate,
    SessionInfo,
    SessionList,
    SessionRef,
    SpawnRequest,
    StatusReply,
)

LONG = 300.0  # deploys and spawns build and probe: allow minutes, not seconds


def _call(subject: str, req: Any, reply: type[Any], timeout: float = 60.0) -> Any:
    async def go(c: HiveClient) -> Any:
        return await c.call(subject, req, reply, timeout=timeout)

    return run_client(go, timeout=timeout)


def _age(ts: float | None) -> str:
    import time

    if not ts:
        return "-"
    s = time.time() - ts
    return f"{s / 86400:.1f}d" if s > 86400 else f"{s / 3600:.1f}h" if s > 3600 else f"{s:.0f}s"


def register(app: typer.Typer) -> None:
    agents = typer.Typer(help="Agent lifecycle (hive-deployer).", no_args_is_help=True)
    session = typer.Typer(help="Sessions for external systems (seed 004).", no_args_is_help=True)
    app.add_typer(agents, name="agents")
    app.add_typer(session, name="session")

    @agents.command("list")
    def list_(as_json: bool = typer.Option(False, "--json")) -> None:
        """Agents and tombstones (destroyed agents with kept state)."""
        got: AgentList = _call(subjects.deployer("list"), Empty(), AgentList)
        if as_json:
            print_json(got)
            return
        t = Table()
        for col in ("name", "state", "transient", "runtime", "pid", "deployed", "restarts", "size", "creds", "age"):
            t.add_column(col)
        for a in got.agents:
            t.add_row(a.name, a.state, a.transient or "", a.runtime, str(a.pid or ""), a.deployed or "",
                      str(a.restarts), f"{a.state_bytes / 1024:.0f}K", "yes" if a.has_credentials else "no",
                      _age(a.destroyed_at if a.state == "destroyed" else a.created_at))
        console.print(t)

    @agents.command("spawn")
    def spawn(name: str, runtime: str = typer.Option(None, help="Must match the deployer's runtime.")) -> None:
        print_json(_call(subjects.deployer("spawn"), SpawnRequest(name=name, runtime=runtime), AgentInfo, LONG))

    def verb(v: str, doc: str) -> None:
        def cmd(name: str) -> None:
            print_json(_call(subjects.deployer(v), NameRequest(name=name), AgentInfo, LONG))

        cmd.__doc__ = doc
        agents.command(v)(cmd)

    for v, doc in (("start", "Start a stopped agent."), ("stop", "Stop an agent (graceful)."),
                   ("restart", "Stop and start."), ("kill", "SIGKILL an agent (no crash restart)."),
                   ("rebuild", "Re-render meta and restart on the deployed config."),
                   ("revive", "Bring a destroyed agent back with its kept state and login.")):
        verb(v, doc)

    @agents.command("destroy")
    def destroy(name: str, purge: bool = typer.Option(False, "--purge", help="Also wipe state and repos."),
                yes: bool = typer.Option(False, "--yes")) -> None:
        """Stop an agent and keep its state as a tombstone (or wipe everything with --purge)."""
        if purge and not yes and not typer.confirm(f"Purge {name}: wipe its state, creds and repos? No undo."):
            raise typer.Exit(1)
        print_json(_call(subjects.deployer("destroy"), DestroyRequest(name=name, purge=purge), AgentInfo, LONG))

    @agents.command("init-config")
    def init_config(name: str) -> None:
        """Seed agents/<name>/config from the template."""
        console.print(_call(subjects.deployer("init_config"), NameRequest(name=name), PathReply).path)

    @agents.command("propose")
    def propose(name: str, deploy_id: str, commit_ref: str) -> None:
        """Copy a config commit into applied/<name> and tag proposal/<id>."""
        print_json(_call(subjects.deployer("propose"), DeployRequest(name=name, id=deploy_id, commit_ref=commit_ref),
                         DeployReply))

    @agents.command("approve")
    def approve(name: str, deploy_id: str, commit_ref: str = typer.Option(None)) -> None:
        """Build and deploy proposal/<id> now (operator-direct; approvals in the broker run by themselves)."""
        r: DeployReply = _call(subjects.deployer("approve"),
                               DeployRequest(name=name, id=deploy_id, commit_ref=commit_ref), DeployReply, LONG)
        print_json(r)
        if r.outcome == "failed":
            raise typer.Exit(1)

    @agents.command("deny")
    def deny(name: str, deploy_id: str, note: str = typer.Option(None)) -> None:
        print_json(_call(subjects.deployer("deny"), DeployRequest(name=name, id=deploy_id, note=note), DeployReply))

    @agents.command("export")
    def export(name: str, path: str, with_creds: bool = typer.Option(False, "--with-creds")) -> None:
        """Write one agent (config, applied, state; creds only if asked) to a .tar.gz on the deployer host."""
        r: ArchiveReply = _call(subjects.deployer("export"),
                                ExportRequest(name=name, path=os.path.abspath(path), include_creds=with_creds),
                                ArchiveReply, LONG)
        console.print(f"{r.path} ({r.bytes} bytes)")

    @agents.command("import")
    def import_(path: str, name: str = typer.Option(None, help="Import under a new name."),
                force: bool = typer.Option(False, "--force", help="Replace an existing agent.")) -> None:
        print_json(_call(subjects.deployer("import"),
                         ImportRequest(path=os.path.abspath(path), name=name, force=force), AgentInfo, LONG))

    @session.command("create")
    def s_create(task: str, priority: str = typer.Argument("medium"), metadata: str = typer.Argument("{}")) -> None:
        """Prints the session id on stdout and its metadata JSON on stderr."""
        try:
            meta = json.loads(metadata) if metadata not in ("", "null") else {}
        except json.JSONDecodeError as exc:
            err_console.print(f"[red]error[/red] metadata is not JSON: {exc}")
            raise typer.Exit(2) from None
        if priority not in ("high", "medium", "low"):
            err_console.print("[red]error[/red] priority must be high, medium or low")
            raise typer.Exit(2)
        s: SessionInfo = _call(subjects.session("create"), SessionCreate(task=task, priority=priority,  # type: ignore[arg-type]
                                                                           metadata=meta), SessionInfo)
        print(s.session_id)
        import sys

        import msgspec

        sys.stderr.write(msgspec.json.encode(s).decode() + "\n")

    @session.command("start")
    def s_start(session_id: str, args: list[str] = typer.Argument(None)) -> None:
        print(_call(subjects.session("start"), SessionRef(session_id=session_id, args=args or []),
                    StatusReply).status)

    @session.command("status")
    def s_status(session_id: str) -> None:
        print(_call(subjects.session("status"), SessionRef(session_id=session_id), StatusReply).status)

    @session.command("get")
    def s_get(session_id: str) -> None:
        print_json(_call(subjects.session("get"), SessionRef(session_id=session_id), SessionInfo))

    @session.command("list")
    def s_list() -> None:
        print_json(_call(subjects.session("list"), Empty(), SessionList))

    @session.command("output-dir")
    def s_output(session_id: str) -> None:
        print(_call(subjects.session("output_dir"), SessionRef(session_id=session_id), PathReply).path)

    @session.command("log")
    def s_log(session_id: str) -> None:
        print(_call(subjects.session("log"), SessionRef(session_id=session_id), PathReply).path)

    @session.command("cleanup")
    def s_cleanup(max_age_hours: float = typer.Argument(24.0),
                  remove_outputs: bool = typer.Option(False, "--remove-outputs")) -> None:
        """Remove completed/failed sessions older than N hours (outputs kept unless --remove-outputs)."""
        r: CleanupReply = _call(subjects.session("cleanup"),
                                SessionCleanup(max_age_hours=max_age_hours, remove_outputs=remove_outputs),
                                CleanupReply)
        print_json(r)


__all__ = ["HiveError", "register"]
