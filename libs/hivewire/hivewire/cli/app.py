"""The typer application and helpers shared by every sub-command."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from hivewire.errors import HiveError
from hivewire.nats_transport import NatsTransport
from hivewire.runner import resolve_nats_url
from hivewire.service import HiveClient
from hivewire.settings import Settings

T = TypeVar("T")

app = typer.Typer(
    name="hive",
    help="Hive: a control plane for swarms of LLM coding agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def settings() -> Settings:
    return Settings.from_env()


def run_client(fn: Callable[[HiveClient], Awaitable[T]], timeout: float = 5.0) -> T:
    """Connect once (failing fast), run `fn`, print a HiveError nicely."""

    async def go() -> T:
        transport = await NatsTransport.connect(resolve_nats_url(settings()), name="hive-cli", forever=False)
        try:
            return await fn(HiveClient(transport, timeout=timeout))
        finally:
            await transport.close()

    try:
        return asyncio.run(go())
    except HiveError as err:
        err_console.print(f"[red]error[/red] {err.code}: {err.message}")
        raise typer.Exit(2) from None


def print_json(obj: Any) -> None:
    import msgspec

    console.print_json(msgspec.json.encode(obj).decode())
