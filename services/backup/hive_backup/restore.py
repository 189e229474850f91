"""Restore a snapshot to a scratch path, or in place with the service stopped.

In place: every target database is checked first; one still open by any
process (it is live) makes the whole restore refuse before anything changes.
Stale `-wal`/`-shm` files are removed, then the restored file is renamed in.
Existing repos are moved aside (`*.pre-restore-<ts>`), not deleted.

A snapshot is data, never trusted paths: the manifest is checked
(`engine.check_manifest`), every object is opened without following a
symlink, every tar member is checked before anything is written
(`safetar.check_members`), and everything is first restored into a scratch
dir beside the destination. Only then does it move into place: a scratch
restore renames the whole tree to `dest`; an in-place one first checks that
no target has a symlink among its parents, then renames each path through
directory fds. A refusal names the offending path and changes nothing.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

import structlog

from hive_backup import archive, confine, keys, metrics, safetar
from hive_backup.engine import Engine, check_db, check_manifest, open_object, read_manifest, refused
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
    try:
        check_manifest(snap)
    except confine.UnsafePath as exc:
        refused("restore", exc, snapshot_id=snap.snapshot_id)
        raise HiveError("forbidden", f"unsafe snapshot {snap.snapshot_id}, nothing restored: {exc}") from None
    dest = dest.absolute()
    home = engine.home.absolute()
    if in_place:
        if dest != home:
            raise HiveError("bad_request", f"in-place restore goes to HIVE_HOME ({home}), not {dest}")
    else:
        if dest == home or home.is_relative_to(dest):
            raise HiveError("conflict", "refusing to restore over HIVE_HOME without in_place")
        if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
            raise HiveError("conflict", f"scratch destination {dest} is not an empty directory")
    files = [f for f in snap.files if not only or f.source in only]
    if only and not files:
        raise HiveError("not_found", f"none of {only} is in snapshot {snap.snapshot_id}")
    if in_place:
        problems = [p for f in files if f.kind == "sqlite" for p in live_problems(dest / f.source)]
        if problems:
            log.error("backup_restore_refused", snapshot_id=snap.snapshot_id, problems=problems)
            raise HiveError("conflict", "refusing to overwrite a live database (stop Hive first): "
                            + "; ".join(problems))
    ident = keys.load_identity(identity) if identity else None
    reply = RestoreReply(snapshot_id=snap.snapshot_id, dest=str(dest))
    stamp = time.strftime("%Y%m%dT%H%M%S")
    # Everything is restored into a scratch dir beside the destination first; only once every object
    # and member was checked and written does anything move into place.
    parent = dest if in_place else dest.parent
    parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.restore-", dir=parent))
    try:
        root, work = scratch / "root", scratch / "work"
        root.mkdir(mode=0o700)
        work.mkdir(mode=0o700)
        placed: list[tuple[str, str]] = []  # (path relative to dest, "db" | "repo" | "file")
        for i, f in enumerate(files):
            engine._progress("restore", i, len(files), f.source)
            try:
                placed += _restore_one(snapdir, f, root, work, ident, reply)
            except confine.UnsafePath as exc:
                refused("restore", exc, snapshot_id=snap.snapshot_id, object=f.name)
                raise HiveError("forbidden", f"unsafe snapshot {snap.snapshot_id}, nothing restored: "
                                f"{f.name}: {exc}") from None
        if in_place:
            _place_all(root, home, placed, stamp, snap.snapshot_id)
        else:
            if dest.exists():
                dest.rmdir()  # empty, checked above
            os.rename(root, dest)
            archive.fsync_dir(dest.parent)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    engine._progress("restore", len(files), len(files), "")
    log.info("backup_restored", snapshot_id=snap.snapshot_id, dest=str(dest), in_place=in_place,
             restored=len(reply.restored), skipped=len(reply.skipped))
    return reply


def _checked_object(snapdir: Path, f: SnapshotFile, max_size: int) -> BinaryIO:
    """The stored object, opened without following a symlink, its sha256 checked; positioned at 0."""
    fd, st = open_object(snapdir, f)
    obj = os.fdopen(fd, "rb")
    try:
        if st.st_size > max_size:
            raise confine.UnsafePath(f.name, f"stored object larger than {max_size} bytes")
        if archive.sha256_fileobj(obj) != f.sha256:
            raise HiveError("conflict", f"{f.name}: sha256 does not match the manifest; run verify")
        obj.seek(0)
        return obj
    except BaseException:
        obj.close()
        raise


def _restore_one(snapdir: Path, f: SnapshotFile, root: Path, work: Path, ident: object,
                 reply: RestoreReply) -> list[tuple[str, str]]:
    """Restore one object under `root` (scratch); returns what to move into place."""
    if f.kind == "sqlite":
        parts = confine.check_relpath(f.source)
        _mkparents(root, parts)
        with _checked_object(snapdir, f, confine.MAX_MEMBER_BYTES) as obj:
            content = archive.gunzip_file(obj, root / f.source)
        if f.content_sha256 and content != f.content_sha256:
            raise HiveError("conflict", f"{f.name}: decompressed content does not match the manifest; run verify")
        reply.restored.append(f.source)
        return [(f.source, "db")]
    if f.kind == "git":
        parts = confine.check_relpath(f.source)
        _mkparents(root, parts)
        with _checked_object(snapdir, f, confine.MAX_MEMBER_BYTES):
            archive.git_restore(snapdir / f.name, root / f.source)
        reply.restored.append(f.source)
        return [(f.source, "repo")]
    if f.kind == "secrets":
        if ident is None:
            reply.skipped.append("secrets: no identity given")
            return []
        with _checked_object(snapdir, f, 2 * confine.MAX_SECRETS_BYTES) as obj:
            data = obj.read()
        raw = safetar.gunzip_bytes(keys.decrypt(data, ident), confine.MAX_SECRETS_BYTES)  # type: ignore[arg-type]
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            members = safetar.check_members(tar, f.name, max_bytes=confine.MAX_SECRETS_BYTES)
            names = safetar.extract(tar, members, root, private=True)
        reply.restored += names
        return [(n, "file") for n in names]
    if f.kind == "tree":
        plain = work / "tree.tar"
        with _checked_object(snapdir, f, confine.MAX_TAR_STREAM) as obj:
            archive.gunzip_file(obj, plain, limit=confine.MAX_TAR_STREAM)
        try:
            with tarfile.open(plain) as tar:
                members = safetar.check_members(tar, f.name, prefix=f.source)
                names = safetar.extract(tar, members, root)
        finally:
            plain.unlink(missing_ok=True)
        reply.restored += names
        return [(n, "file") for n in names]
    raise confine.UnsafePath(f.name, f"unknown object kind {f.kind!r}")


def _mkparents(root: Path, parts: tuple[str, ...]) -> None:
    """Create root/parts[:-1], refusing a symlink on the way (a repo restored earlier may hold one)."""
    rfd = confine.open_root(root)
    try:
        os.close(confine.open_dir(rfd, parts[:-1], create=True))
    finally:
        os.close(rfd)


def _place_all(root: Path, home: Path, placed: list[tuple[str, str]], stamp: str, sid: str) -> None:
    """Move restored paths from scratch into HIVE_HOME, through dir fds, after checking every target.

    No target may have a symlink or a non-directory among its parents (an
    agent may have planted `state/x -> /etc`), and a file may not land on a
    directory: one such target refuses the whole restore before anything moves.
    A symlink at the leaf itself is replaced (rename never follows it).
    """
    problems = []
    for rel, kind in placed:
        try:
            st = confine.lstat_under(home, rel)
        except FileNotFoundError:
            continue
        except confine.UnsafePath as exc:
            problems.append(f"{rel}: {exc}")
            continue
        if kind != "repo" and stat.S_ISDIR(st.st_mode):
            problems.append(f"{rel}: a directory is in the way")
    if problems:
        log.error("backup_restore_refused", snapshot_id=sid, problems=problems[:20])
        metrics.REFUSED.inc()
        raise HiveError("forbidden", "refusing to restore in place, nothing changed: " + "; ".join(problems[:5]))
    rfd, hfd = confine.open_root(root), confine.open_root(home)
    try:
        for rel, kind in placed:
            parts = confine.check_relpath(rel)
            sfd = confine.open_dir(rfd, parts[:-1])
            dfd = confine.open_dir(hfd, parts[:-1], create=True)
            leaf = parts[-1]
            try:
                if kind == "db":  # a stale WAL of the old file would corrupt the new one
                    for side in archive.SIDE_FILES:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(leaf + side, dir_fd=dfd)
                elif kind == "repo":
                    with contextlib.suppress(FileNotFoundError):
                        os.rename(leaf, f"{leaf}.pre-restore-{stamp}", src_dir_fd=dfd, dst_dir_fd=dfd)
                os.rename(leaf, leaf, src_dir_fd=sfd, dst_dir_fd=dfd)
                os.fsync(dfd)
            finally:
                os.close(sfd)
                os.close(dfd)
    finally:
        os.close(rfd)
        os.close(hfd)


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
