"""Restore a snapshot to a scratch path, or in place with the service stopped.

In place: every target database is checked first; one still open by any
process (it is live) makes the whole restore refuse before anything changes.
Stale `-wal`/`-shm` files are removed, then the restored file is renamed in.
Existing repos and trees are moved aside (`*.pre-restore-<ts>`), not deleted.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import tempfile
import time
from pathlib import Path

import structlog

from hive_backup import archive, keys
from hive_backup.engine import Engine, check_db, read_manifest
from hivewire.errors import HiveError
from hivewire.wire.backup import RestoreReply, Snapshot, SnapshotFile

log = structlog.get_logger("hive_backup.restore")


def open_by(paths: list[Path]) -> list[str]:
    """Processes (pid:comm) holding any of `paths` open, from /proc (Linux)."""
    wanted = {os.path.realpath(p) for p in paths}
    proc = Path("/proc")
    if not proc.is_dir():
        raise HiveError("unavailable", "cannot tell whether the database is live (no /proc); refusing")
    found = []
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                try:
                    if os.readlink(fd) in wanted:
                        comm = (pid_dir / "comm").read_text().strip()
                        found.append(f"{pid_dir.name}:{comm}")
                        break
                except OSError:
                    continue
        except OSError:  # gone, or another user's process
            continue
    return found


def live_problems(db: Path) -> list[str]:
    side = [Path(str(db) + s) for s in archive.SIDE_FILES]
    holders = open_by([db, *[p for p in side if p.exists()]])
    return [f"{db} is open by {', '.join(holders)}"] if holders else []


def restore(engine: Engine, snapdir: Path, dest: Path, *, identity: str | None = None, in_place: bool = False,
            only: list[str] | None = None) -> RestoreReply:
    snap = read_manifest(snapdir)
    dest = dest.absolute()
    home = engine.home.absolute()
    if in_place:
        if dest != home:
            raise HiveError("bad_request", f"in-place restore goes to HIVE_HOME ({home}), not {dest}")
    else:
        if dest == home or home.is_relative_to(dest):
            raise HiveError("conflict", "refusing to restore over HIVE_HOME without in_place")
        if dest.exists() and any(dest.iterdir()):
            raise HiveError("conflict", f"scratch destination {dest} is not empty")
    files = [f for f in snap.files if not only or f.source in only]
    if only and not files:
        raise HiveError("not_found", f"none of {only} is in snapshot {snap.snapshot_id}")
    if in_place:
        problems = [p for f in files if f.kind == "sqlite" for p in live_problems(dest / f.source)]
        if problems:
            log.error("backup_restore_refused", snapshot_id=snap.snapshot_id, problems=problems)
            raise HiveError("conflict", "refusing to overwrite a live database (stop Hive first): "
                            + "; ".join(problems))
    dest.mkdir(parents=True, exist_ok=True)
    ident = keys.load_identity(identity) if identity else None
    reply = RestoreReply(snapshot_id=snap.snapshot_id, dest=str(dest))
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for i, f in enumerate(files):
        engine._progress("restore", i, len(files), f.source)
        _restore_one(snapdir, f, dest, ident, in_place, stamp, reply)
    engine._progress("restore", len(files), len(files), "")
    log.info("backup_restored", snapshot_id=snap.snapshot_id, dest=str(dest), in_place=in_place,
             restored=len(reply.restored), skipped=len(reply.skipped))
    return reply


def _aside(path: Path, stamp: str) -> None:
    if path.exists():
        os.rename(path, path.with_name(f"{path.name}.pre-restore-{stamp}"))


def _restore_one(snapdir: Path, f: SnapshotFile, dest: Path, ident: object, in_place: bool, stamp: str,
                 reply: RestoreReply) -> None:
    src = snapdir / f.name
    if archive.sha256_file(src) != f.sha256:
        raise HiveError("conflict", f"{f.name}: sha256 does not match the manifest; run verify")
    if f.kind == "sqlite":
        target = dest / f.source
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".restore-new")
        archive.gunzip_file(src, tmp)
        for side in archive.SIDE_FILES:  # stale WAL of the old file would corrupt the new one
            Path(str(target) + side).unlink(missing_ok=True)
        os.replace(tmp, target)
        archive.fsync_dir(target.parent)
        reply.restored.append(f.source)
    elif f.kind == "git":
        target = dest / f.source
        if in_place:
            _aside(target, stamp)
        archive.git_restore(src, target)
        reply.restored.append(f.source)
    elif f.kind == "secrets":
        if ident is None:
            reply.skipped.append("secrets: no identity given")
            return
        raw = gzip.decompress(keys.decrypt(src.read_bytes(), ident))  # type: ignore[arg-type]
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            reply.restored += archive.safe_extract(tar, dest, private=True)
    elif f.kind == "tree":
        with tarfile.open(src, mode="r:gz") as tar:
            reply.restored += archive.safe_extract(tar, dest)


def drill(engine: Engine, snapdir: Path) -> list[str]:
    """Restore every database and repo into a scratch dir and check what came back."""
    snap: Snapshot = read_manifest(snapdir)
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hive-drill-") as tmp:
        scratch = Path(tmp) / "home"
        only = [f.source for f in snap.files if f.kind in ("sqlite", "git")]
        if not only:
            return []
        try:
            restore(engine, snapdir, scratch, only=only)
        except Exception as exc:
            return [f"restore failed: {exc}"]
        for f in snap.files:
            if f.kind == "sqlite":
                target = scratch / f.source
                problems += [f"{f.source}: {p}" for p in check_db(target, f, archive.sha256_file(target))]
            elif f.kind == "git" and not (scratch / f.source / ".git").is_dir():
                problems.append(f"{f.source}: repo not restored")
    return problems
