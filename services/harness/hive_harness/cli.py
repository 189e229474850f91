"""`hive sim-model` (the Messages-API simulator), `hive demo`, `hive doctor`, `hive login set-token`."""

from __future__ import annotations

import asyncio
import json
import sys

import typer

from hive_harness.simmodel import SIMULATOR, Script, SimModel, load_script


def register(app: typer.Typer) -> None:
    from hive_harness import demo

    demo.register(app)  # hive demo

    @app.command("sim-model", short_help="Run the Messages-API simulator (no model).")
    def sim_model(
        host: str = typer.Option("127.0.0.1", help="bind address"),
        port: int = typer.Option(8765, help="port (0: any)"),
        script: str = typer.Option("", help="JSON file: a list of steps (text, tool_use, error, usage, match)"),
        verbose: bool = typer.Option(False, help="print every request"),
    ) -> None:
        """Run a SIMULATOR of the Anthropic Messages API (scripted replies, no model).

        Point the agent CLI at it with ANTHROPIC_BASE_URL=http://HOST:PORT and any
        ANTHROPIC_API_KEY. Without a script it answers "ok" (and "done." after a tool result).
        """
        sim = SimModel(load_script(script) if script else Script(), host=host, port=port, verbose=verbose)

        async def go() -> None:
            task = asyncio.create_task(sim.serve_forever())
            await asyncio.sleep(0.2)
            typer.echo(f"{SIMULATOR} listening on {sim.url}")
            await task

        try:
            asyncio.run(go())
        except KeyboardInterrupt:
            pass

    @app.command("doctor", short_help="Check this host for the hive.")
    def doctor(as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON.")) -> None:
        """Check this host for the hive: agent CLI, credentials per agent, sandbox, NATS, disk, ports.

        Each failing check prints its fix; exits 1 when a check that stops agents fails."""
        from hive_harness.doctor import run_checks
        from hivewire.cli.app import console, settings

        checks = run_checks(settings())
        if as_json:
            sys.stdout.write(json.dumps([c.as_dict() for c in checks], indent=2) + "\n")
        else:
            for c in checks:
                mark = "ok  " if c.ok else ("warn" if c.warn else "FAIL")
                console.print(f"{mark}  {c.name}: {c.detail}", markup=False, highlight=False)
                if not c.ok and c.fix:
                    console.print(f"      fix: {c.fix}", markup=False, highlight=False)
        if any(not c.ok and not c.warn for c in checks):
            raise typer.Exit(1)

    login = typer.Typer(help="Agent CLI logins for unattended fleets.", no_args_is_help=True)
    app.add_typer(login, name="login")

    @login.command("set-token")
    def set_token(agent: str = typer.Option(None, "--agent", help="Only this agent (default: every agent)."),
                  clear: bool = typer.Option(False, "--clear", help="Remove the stored token instead.")) -> None:
        """Store a long-lived login token (from `claude setup-token`) for every agent or one.

        The token is read from stdin (or a hidden prompt on a terminal), never from the command
        line; it is stored 0600 and given to the agent CLI as CLAUDE_CODE_OAUTH_TOKEN."""
        from hive_harness import tokens
        from hivewire.cli.app import console, err_console, settings
        from hivewire.errors import HiveError

        st = settings()
        try:
            path = tokens.agent_path(st.agent_dir(agent) / "creds") if agent else tokens.fleet_path(st.home)
        except HiveError as exc:
            err_console.print(f"error: {exc.message}", markup=False, highlight=False)
            raise typer.Exit(2) from exc
        who = f"agent {agent}" if agent else "every agent"
        if clear:
            path.unlink(missing_ok=True)
            console.print(f"login token for {who} removed", markup=False, highlight=False)
            return
        raw = typer.prompt("token", hide_input=True) if sys.stdin.isatty() else sys.stdin.read()
        try:
            tokens.write(path, raw)
        except ValueError as exc:
            err_console.print(f"error: {exc}", markup=False, highlight=False)
            raise typer.Exit(2) from exc
        console.print(f"login token for {who} stored in {path} (0600); agents use it from their next turn",
                      markup=False, highlight=False)
