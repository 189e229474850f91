"""`hive host add|remove|join` and `hive hosts` (issue 26; the `hive.cli` entry point)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TypeVar

import typer

from hivewire.cli.app import JSON_HELP, console, err_console, print_json, print_rows, run_client, settings
from hivewire.errors import HiveError
from hivewire.service import HiveClient
from hivewire.wire import ops
from hivewire.wire.hosts import HostAddRequest, HostNameRequest
from hivewire.wire.op import Op

Req = TypeVar("Req")
Rep = TypeVar("Rep")
NAME = typer.Argument(..., help="The host's name (lowercase letters, digits and '-', like an agent's).")


def _call(op: Op[Req, Rep], req: Req, timeout: float = 30.0) -> Rep:
    async def go(c: HiveClient) -> Rep:
        return await c.request(op, req, timeout=timeout)

    return run_client(go, timeout=timeout)


def _ago(ts: float | None) -> str:
    return "-" if not ts else f"{max(0.0, time.time() - ts):.0f}s ago"


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f}G" if n else "-"


def register(app: typer.Typer) -> None:
    host = typer.Typer(help="Hosts of a hive spread over several machines: invite, join, remove.",
                       short_help="Invite, join and remove machines of a hive.",
                       no_args_is_help=True)
    app.add_typer(host, name="host")

    @host.command("add")
    def add(name: str = NAME,
            agent_limit: int = typer.Option(0, help="Most agents this host runs (0: the host's own limit)."),
            ttl: float = typer.Option(3600.0, help="Seconds the join token stays valid."),
            as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
        """Invite a host: prints the one-time join command to run on it."""
        rep = _call(ops.HOSTS_ADD, HostAddRequest(name=name, agent_limit=agent_limit, ttl_s=ttl))
        if as_json:
            print_json(rep)
            return
        console.print(f"Run this on {name} within {ttl / 60:.0f} minutes (the token works once):",
                      markup=False, highlight=False)
        console.print(f"  {rep.command}", markup=False, highlight=False, soft_wrap=True)

    @host.command("remove")
    def remove(name: str = NAME,
               force: bool = typer.Option(False, "--force/--no-force",
                                          help="Also when agents are still placed there (they are cut off).")) -> None:
        """Remove a host: its NATS identity is revoked (its connections are cut at once)."""
        _call(ops.HOSTS_REMOVE, HostNameRequest(name=name, force=force))
        console.print(f"{name}: removed; its credentials are revoked", markup=False, highlight=False)

    @host.command("join")
    def join_(url: str = typer.Argument(..., help="The hub's join URL (`hive host add` printed it)."),
              name: str = typer.Option(..., help="This host's name, as invited."),
              token: str = typer.Option(..., help="The one-time token `hive host add` printed."),
              ca_sha256: str = typer.Option("", help="The core's CA fingerprint `hive host add` printed: the join "
                                                     "is refused unless the server's CA has it.")) -> None:
        """On the new host: join the hive (writes HIVE_HOME/host.json, its NATS credentials and the core's CA)."""
        from hive_agenthost.join import join

        home = Path(settings().home)
        try:
            cfg = join(home, url, name, token, ca_sha256=ca_sha256)
        except HiveError as exc:
            err_console.print(f"[red]error[/red] {exc.message}")
            raise typer.Exit(1) from None
        console.print(f"joined as {cfg.name} (NATS {cfg.nats_url}); start its agent host with: "
                      f"HIVE_HOME={home} hive-agenthost", markup=False, highlight=False, soft_wrap=True)

    @app.command("hosts", short_help="The hosts of this hive and their state.")
    def hosts(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
        """Hosts of this hive: state, capacity, agents, version and last heartbeat."""
        got = _call(ops.HOSTS_LIST, HostNameRequest(name=""))
        if as_json:
            print_json(got)
            return
        print_rows(("name", "state", "role", "agents", "running", "limit", "mem free", "cpus", "load", "version",
                    "heartbeat"), (
            (h.name, h.state, h.role, ",".join(h.agents) or "-", str(h.running), str(h.agent_limit or "-"),
             f"{_gib(h.mem_available)}/{_gib(h.mem_total)}", str(h.cpus or "-"), f"{h.load1:.2f}",
             h.version or "-", _ago(h.last_heartbeat)) for h in got.hosts),
            empty="no hosts")
