"""The typer application and helpers shared by every sub-command."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

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
    # click's plain help: flags show as `--purge`, not `--purge <bool>` as typer's rich panels do
    rich_markup_mode=None,
)
# Not a terminal (a pipe, a file): never re-wrap a line at 80 columns, so ids, paths and
# tokens stay whole for grep, cut and scripts.
console = Console(soft_wrap=not sys.stdout.isatty())
err_console = Console(stderr=True, soft_wrap=not sys.stderr.isatty())

JSON_HELP = "Print JSON instead of a table."


def is_tty() -> bool:
    return console.is_terminal


def print_rows(columns: Sequence[str], rows: Iterable[Sequence[str]], *, empty: str, title: str | None = None) -> None:
    """A listing: a table on a terminal; elsewhere tab-separated lines (header first), values never cut.

    No rows: the plain `empty` message ("no agents"), never an empty frame.
    """
    rows = [[str(v) for v in r] for r in rows]
    if not rows:
        console.print(empty, markup=False, highlight=False)
        return
    if not is_tty():
        for r in [list(columns), *rows]:
            sys.stdout.write("\t".join(v.replace("\t", " ").replace("\n", " ") for v in r) + "\n")
        sys.stdout.flush()
        return
    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*(Text(v) for v in r))  # values as they are: a `[x]` in a body is not markup
    console.print(table)


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
