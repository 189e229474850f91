"""`hive sim-model`: the Messages-API simulator for demos and load tests."""

from __future__ import annotations

import asyncio

import typer

from hive_harness.simmodel import SIMULATOR, Script, SimModel, load_script


def register(app: typer.Typer) -> None:
    @app.command("sim-model")
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
