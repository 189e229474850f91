"""`hive migrate status|up|down`: versioned schema changes of every sqlite file."""

from __future__ import annotations

from pathlib import Path

import typer

from hivewire.cli.app import JSON_HELP, app, console, err_console, print_json, print_rows, settings
from hivewire.db import connect
from hivewire.migrations import DatabaseSpec, discover_databases

migrate_app = typer.Typer(help="Schema migrations of Hive's sqlite files.", no_args_is_help=True)
app.add_typer(migrate_app, name="migrate")


def _select(db: str | None) -> list[DatabaseSpec]:
    specs = discover_databases(settings())
    if db:
        specs = [s for s in specs if s.label == db]
        if not specs:
            err_console.print(f"[red]error[/red] no database labelled {db!r} (see `hive migrate status`)")
            raise typer.Exit(2)
    return specs


@migrate_app.command("status")
def status(
    db: str = typer.Option(None, help="Only this database label."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show each database's applied and pending steps."""
    rows: list[dict[str, object]] = []
    for spec in _select(db):
        path = Path(str(spec.path))
        row: dict[str, object] = {"database": spec.label, "path": str(path), "version": None,
                                  "latest": spec.migrations.latest, "pending": []}
        rows.append(row)
        if not path.exists():
            continue
        conn = connect(path)
        try:
            steps = spec.migrations.status(conn)
        finally:
            conn.close()
        row["version"] = max((s.version for s in steps if s.applied_at is not None), default=0)
        row["pending"] = [f"{s.version}:{s.name}" for s in steps if s.applied_at is None]
    if as_json:
        print_json(rows)
        return
    print_rows(("database", "path", "version", "latest", "pending"), (
        (str(r["database"]), str(r["path"]), "-" if r["version"] is None else str(r["version"]), str(r["latest"]),
         "(file not created yet)" if r["version"] is None else ", ".join(r["pending"]) or "-")  # type: ignore[arg-type]
        for r in rows), empty="no databases registered (no Hive service installed?)")


@migrate_app.command("up")
def up(db: str = typer.Option(None, help="Only this database label.")) -> None:
    """Apply every pending step to every existing database."""
    for spec in _select(db):
        path = Path(str(spec.path))
        if not path.exists():
            console.print(f"{spec.label}: not created yet, skipped (its service creates it at start)")
            continue
        conn = connect(path)
        try:
            done = spec.migrations.up(conn)
        finally:
            conn.close()
        names = ", ".join(f"{m.version}:{m.name}" for m in done) or "already current"
        console.print(f"{spec.label}: {names}")


@migrate_app.command("down")
def down(
    db: str = typer.Option(..., help="The database label (required: one file at a time)."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Undo the latest applied step of one database."""
    for spec in _select(db):
        path = Path(str(spec.path))
        if not path.exists():
            err_console.print(f"[red]error[/red] {path} does not exist")
            raise typer.Exit(2)
        if not yes and not typer.confirm(f"Undo the latest step of {spec.label} ({path})?"):
            raise typer.Exit(1)
        conn = connect(path)
        try:
            m = spec.migrations.down(conn)
        except ValueError as exc:
            err_console.print(f"[red]error[/red] {exc}")
            raise typer.Exit(2) from None
        finally:
            conn.close()
        console.print(f"{spec.label}: reverted {m.version}:{m.name}" if m else f"{spec.label}: nothing to undo")
