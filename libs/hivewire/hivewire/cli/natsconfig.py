"""`hive nats-config`: generate the nats-server auth config and credentials."""

from __future__ import annotations

import typer

from hivewire import natsauth
from hivewire.cli.app import app, console, err_console, settings
from hivewire.errors import HiveError
from hivewire.names import MANAGER


@app.command("nats-config")
def nats_config(
    agent: list[str] = typer.Option([], "--agent", "-a", help="Also issue credentials for this agent (repeatable)."),
    revoke: list[str] = typer.Option([], "--revoke", help="Revoke this agent's credentials (repeatable)."),
    rotate: bool = typer.Option(False, help="New passwords for every user (restart every client afterwards)."),
    reload: bool = typer.Option(True, help="SIGHUP the running nats-server (pid file run/nats.pid)."),
    env: str = typer.Option("", help="Print the credentials file path of this user (e.g. operator, svc_broker)."),
) -> None:
    """Generate NATS users, permissions and credentials.

    Writes HIVE_HOME/nats/nats-server.conf, auth.conf and creds/<user>.env, all
    0600. Idempotent: existing passwords are kept unless --rotate.
    """
    home = settings().home
    if env:
        path = natsauth.creds_path(home, env)
        if not path.exists():
            err_console.print(f"[red]error[/red] not_found: no credentials for {env!r}; users: {natsauth.users(home)}")
            raise typer.Exit(2)
        console.print(f"export HIVE_NATS_CREDS={path}")
        return
    try:
        cfg = natsauth.generate(home, agents=(MANAGER, *agent), rotate=rotate)
        for name in revoke:
            natsauth.revoke_agent(home, name, reload=False)
        natsauth.check_config(cfg)
    except HiveError as err:
        err_console.print(f"[red]error[/red] {err.code}: {err.message}")
        raise typer.Exit(2) from None
    except ValueError as exc:
        err_console.print(f"[red]error[/red] bad_request: {exc}")
        raise typer.Exit(2) from None
    reloaded = reload and natsauth.reload_server(home)
    console.print(f"config: {cfg}")
    console.print(f"users:  {', '.join(natsauth.users(home))}")
    console.print(f"creds:  {natsauth.auth_dir(home) / 'creds'}/<user>.env  (give a process HIVE_NATS_CREDS=<file>)")
    console.print("nats-server reloaded" if reloaded else "no running nats-server found (start it with -c <config>)")
