"""`hive backup run|list|verify|restore|prune` (a `hive.cli` plugin).

Commands talk to the running hive-backup over NATS; `--offline` runs the same
operations in this process (Hive down, or no NATS). An in-place restore is
always offline and needs Hive stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TaskProgressColumn, TextColumn

from hive_backup.config import load_config
from hive_backup.ops import Backups
from hivewire.cli.app import JSON_HELP, console, err_console, print_json, print_rows, run_client, settings
from hivewire.errors import HiveError
from hivewire.service import HiveClient
from hivewire.transport import Msg
from hivewire.wire import ops
from hivewire.wire.backup import (
    ListRequest,
    PruneRequest,
    RestoreRequest,
    RunRequest,
    Snapshot,
    SnapshotList,
    VerifyRequest,
)
from hivewire.wire.backup import (
    Progress as ProgressMsg,
)

T = TypeVar("T")
LONG_S = 6 * 3600.0

backup_app = typer.Typer(help="Backups: snapshots, verify, restore, retention.", no_args_is_help=True)
TARGET = typer.Option("local", help="Where the snapshots are: local, or a target named in backup/config.toml.")
OFFLINE = typer.Option(False, help="Run in this process instead of asking hive-backup (Hive down, or no NATS).")
JSON = typer.Option(False, "--json", help=JSON_HELP)
SNAPSHOT = typer.Argument(..., help="The snapshot id (`hive backup list`).")


class Bars:
    """One rich progress bar per step (snapshot, verify, restore)."""

    def __init__(self) -> None:
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description:<9}"), BarColumn(),
                                 TaskProgressColumn(), TextColumn("{task.fields[item]}"), console=console,
                                 transient=False)
        self.tasks: dict[str, TaskID] = {}

    def update(self, step: str, done: int, total: int, item: str) -> None:
        if step not in self.tasks:
            self.tasks[step] = self.progress.add_task(step, total=max(total, 1), item="")
        self.progress.update(self.tasks[step], completed=done, total=max(total, 1), item=item)


def _offline(fn: Callable[[Backups], Awaitable[T]], bars: Bars | None = None) -> T:
    s = settings()
    b = Backups(s.home, load_config(s.home), progress=bars.update if bars else None)

    async def go() -> T:
        return await fn(b)

    try:
        return asyncio.run(go())
    except HiveError as err:
        err_console.print(f"[red]error[/red] {err.code}: {err.message}")
        raise typer.Exit(2) from None


def _online(fn: Callable[[HiveClient], Awaitable[T]], bars: Bars | None = None) -> T:
    async def go(client: HiveClient) -> T:
        sub = None
        if bars is not None:
            async def on(msg: Msg) -> None:
                try:
                    p = msgspec.json.decode(msg.data, type=ProgressMsg)
                except msgspec.DecodeError:
                    return
                bars.update(p.step, p.done, p.total, p.item)

            sub = await client.transport.subscribe(ops.BACKUP_PROGRESS.subject, on)
        try:
            return await fn(client)
        finally:
            if sub is not None:
                await sub.unsubscribe()

    return run_client(go, timeout=LONG_S)


def _do(offline: bool, local: Callable[[Backups], Awaitable[T]], remote: Callable[[HiveClient], Awaitable[T]],
        progress: bool = False) -> T:
    bars = Bars() if progress else None
    if bars is None:
        return _offline(local) if offline else _online(remote)
    with bars.progress:
        return _offline(local, bars) if offline else _online(remote, bars)


def _summary(snap: Snapshot) -> None:
    state = {True: "[green]verified[/green]", False: "[red]VERIFY FAILED[/red]", None: "not verified"}
    console.print(f"snapshot {snap.snapshot_id}: {len(snap.files)} objects, {snap.bytes} bytes, "
                  f"{snap.duration_s:.1f}s, {state[snap.verified]}")
    for s in snap.skipped:
        console.print(f"  [yellow]skipped[/yellow] {s}")


@backup_app.command("run")
def run_cmd(
    cls: list[str] = typer.Option([], "--class", "-c", help="databases, secrets, repos, bulky (default: all)"),
    offline: bool = OFFLINE,
    json: bool = JSON,
) -> None:
    """Take a snapshot now (then verify it and run a restore drill)."""
    snap = _do(offline, lambda b: b.run(cls),
               lambda c: c.request(ops.BACKUP_RUN, RunRequest(classes=cls)), progress=not json)
    print_json(snap) if json else _summary(snap)
    if snap.verified is False or any(": FAILED" in s for s in snap.skipped):
        raise typer.Exit(1)


@backup_app.command("list")
def list_cmd(target: str = TARGET, offline: bool = OFFLINE, json: bool = JSON) -> None:
    """Complete snapshots, newest first."""
    snaps = _do(offline, lambda b: b.list(target),
                lambda c: _snaps(c.request(ops.BACKUP_LIST, ListRequest(target=target))))
    if json:
        print_json(snaps)
        return
    print_rows(("snapshot", "classes", "objects", "bytes", "verified"), (
        (s.snapshot_id, ",".join(s.classes), str(len(s.files)), str(s.bytes),
         {True: "ok", False: "FAILED", None: "-"}[s.verified]) for s in snaps),
        empty="no backups yet (take one with `hive backup run`)")


async def _snaps(reply: Awaitable[SnapshotList]) -> list[Snapshot]:
    return (await reply).snapshots


@backup_app.command("verify")
def verify_cmd(snapshot_id: str = SNAPSHOT,
               identity: Path | None = typer.Option(None, help="age identity: also check secrets"),
               target: str = TARGET, offline: bool = OFFLINE) -> None:
    """Re-check sha256, decompress, open, integrity_check, row counts."""
    ident = str(identity.absolute()) if identity else None
    rep = _do(offline, lambda b: b.verify(snapshot_id, target, ident),
              lambda c: c.request(ops.BACKUP_VERIFY,
                                  VerifyRequest(snapshot_id=snapshot_id, target=target, identity=ident)),
              progress=True)
    if rep.ok:
        console.print(f"[green]ok[/green] {rep.snapshot_id}: {rep.checked} objects verified")
        return
    err_console.print(f"[red bold]VERIFY FAILED[/red bold] {rep.snapshot_id}")
    for p in rep.problems:
        err_console.print(f"  [red]✗[/red] {p}")
    raise typer.Exit(1)


@backup_app.command("restore")
def restore_cmd(
    snapshot_id: str = SNAPSHOT,
    dest: Path | None = typer.Argument(None, help="scratch directory (empty or absent)"),
    identity: Path | None = typer.Option(None, help="age identity file, to restore secrets"),
    in_place: bool = typer.Option(False, "--in-place", help="restore into HIVE_HOME; Hive must be stopped"),
    only: list[str] = typer.Option([], "--only", help="restore only these sources (paths in HIVE_HOME)"),
    target: str = TARGET,
    offline: bool = OFFLINE,
) -> None:
    """Restore a snapshot to a scratch dir, or (with --in-place, Hive stopped) into HIVE_HOME."""
    if in_place:
        offline = True
        dest = dest or settings().home
    if dest is None:
        err_console.print("[red]error[/red] give a scratch DEST, or --in-place")
        raise typer.Exit(2)
    d, ident = str(dest.absolute()), str(identity.absolute()) if identity else None
    rep = _do(offline, lambda b: b.restore(snapshot_id, d, identity=ident, in_place=in_place, only=only,
                                           target=target),
              lambda c: c.request(ops.BACKUP_RESTORE,
                                  RestoreRequest(snapshot_id=snapshot_id, dest=d, identity=ident, only=only,
                                                 target=target)),
              progress=True)
    console.print(f"restored {len(rep.restored)} items of {rep.snapshot_id} into {rep.dest}")
    for s in rep.skipped:
        console.print(f"  [yellow]skipped[/yellow] {s}")


@backup_app.command("prune")
def prune_cmd(dry_run: bool = typer.Option(False, "--dry-run", help="Only show what would be deleted."),
              target: str = TARGET, offline: bool = OFFLINE) -> None:
    """Apply retention (GFS; the newest good snapshot is always kept)."""
    rep = _do(offline, lambda b: b.prune(target, dry_run),
              lambda c: c.request(ops.BACKUP_PRUNE, PruneRequest(dry_run=dry_run, target=target)))
    verb = "would delete" if dry_run else "deleted"
    console.print(f"kept {len(rep.kept)}, {verb} {len(rep.deleted)}")
    for sid in rep.deleted:
        console.print(f"  {verb} {sid}")


def register(app: Any) -> None:
    app.add_typer(backup_app, name="backup")
