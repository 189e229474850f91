"""Low-level steps: online sqlite copies, compression, hashing, bundles, tars.

Every file is written to a temp name, fsynced, then renamed, so a crash never
leaves a half-written file under its final name.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import sqlite3
import subprocess
import tarfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from hive_backup import confine, safetar
from hivewire import safegit
from hivewire.errors import HiveError

CHUNK = 1 << 20
# Written data is flushed to disk in bounded chunks as it goes: one big fsync at
# the end would queue hundreds of MB in front of a live writer's commit fsyncs.
FLUSH_BYTES = 8 << 20
SIDE_FILES = ("-wal", "-shm", "-journal")


class Skip(Exception):
    """A source that is present but has nothing to back up (an empty repo)."""


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def publish(tmp: Path, final: Path) -> None:
    """fsync `tmp`, rename it to `final`, fsync the directory."""
    fsync_file(tmp)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return sha256_fileobj(f)


def sha256_fileobj(f: BinaryIO) -> str:
    h = hashlib.sha256()
    while chunk := f.read(CHUNK):
        h.update(chunk)
    return h.hexdigest()


# --- sqlite -----------------------------------------------------------------------
def open_readonly(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=5.0, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def sqlite_copy(src: Path, dst: Path, *, flush_every: int = 16 << 20, expect: tuple[int, int] | None = None) -> None:
    """A consistent online copy of a live (WAL) database, without blocking its writer.

    The backup API copies every page in ONE step (`pages=-1`) inside a single
    read transaction: WAL readers never block the writer, and a one-step copy
    is never restarted by the writer's commits (a page-stepped copy would be).
    Never a file copy: that races the WAL.

    Two things keep the writer's commits fast while we copy: the copy is
    flushed to disk as it grows (every `flush_every` bytes, from a helper
    thread) so one huge final fsync never queues in front of the writer's
    fsyncs; and once the copy is done we run a PASSIVE checkpoint ourselves,
    so the writer's next auto-checkpoint does not have to catch up alone on
    the WAL that grew while our read transaction pinned it.

    `expect` (st_dev, st_ino): the file sqlite must have opened. sqlite opens
    by path and follows symlinks, so a file swapped for a symlink after it was
    checked would be copied; sqlite's new fds (/proc/self/fd) must include one
    on this very file, else the copy is refused (UnsafePath).
    """
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    stop = threading.Event()

    def flusher() -> None:
        flushed = 0
        while not stop.wait(0.02):
            try:
                size = os.path.getsize(tmp)
                if size - flushed >= flush_every:
                    fd = os.open(tmp, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    flushed = size
            except OSError:
                continue

    before = confine.fds_on(*expect) if expect else set()
    source = open_readonly(src)
    try:
        if expect:
            source.execute("PRAGMA schema_version").fetchone()
            if not confine.fds_on(*expect) - before:
                raise confine.UnsafePath(str(src), "not the file that was checked (swapped for a symlink?)")
        target = sqlite3.connect(tmp, isolation_level=None)
        helper = threading.Thread(target=flusher, name="backup-flush", daemon=True)
        helper.start()
        try:
            source.backup(target, pages=-1)
        finally:
            stop.set()
            helper.join()
        try:
            # The copy is a standalone file: rollback journal, not WAL.
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
    finally:
        source.close()
    checkpoint(src)
    for side in SIDE_FILES:
        Path(str(tmp) + side).unlink(missing_ok=True)
    publish(tmp, dst)


def checkpoint(path: Path) -> None:
    """A PASSIVE checkpoint (never waits for, never blocks, the writer); best effort."""
    try:
        conn = sqlite3.connect(path, timeout=0.1, isolation_level=None)
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        pass


def table_counts(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
        "AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY name"
    ).fetchall()
    return {name: int(conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]) for (name,) in rows}


def schema_version(conn: sqlite3.Connection) -> int | None:
    has = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'").fetchone()
    if not has:
        return None
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else None


def integrity_problems(path: Path) -> list[str]:
    conn = open_readonly(path)
    try:
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        return [f"cannot open: {exc}"]
    finally:
        conn.close()
    return [] if rows == ["ok"] else rows[:20]


def describe_db(path: Path) -> tuple[dict[str, int], int | None]:
    conn = open_readonly(path)
    try:
        return table_counts(conn), schema_version(conn)
    finally:
        conn.close()


# --- compression --------------------------------------------------------------------
class SyncingFile(io.RawIOBase):
    """A write-only file whose data goes to disk in bounded chunks as it is written.

    Every `flush_every` bytes a helper thread runs `fdatasync` (the writing
    thread never waits for it, unless a whole further chunk piles up before
    the last sync finished). The final fsync (in `publish`) then has at most
    about one chunk left, so a live database's writer never waits behind our
    whole output in the disk queue.
    """

    def __init__(self, path: Path, flush_every: int = FLUSH_BYTES) -> None:
        self._f = open(path, "wb", buffering=0)  # closed in close()
        self._every = flush_every
        self._pending = 0
        self._cv = threading.Condition()
        self._want = False
        self._stop = False
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._sync_loop, name="backup-flush", daemon=True)
        self._thread.start()

    def _sync_loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._want or self._stop)
                if self._stop:
                    return
            try:
                os.fdatasync(self._f.fileno())
            except OSError as exc:
                self._error = exc
            with self._cv:
                self._want = False
                self._cv.notify_all()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self._error is not None:
            raise self._error
        n = self._f.write(b) or 0
        self._pending += n
        if self._pending >= self._every:
            with self._cv:
                if self._pending >= 2 * self._every:  # bounded: wait for the previous sync
                    self._cv.wait_for(lambda: not self._want)
                if not self._want:
                    self._want = True
                    self._pending = 0
                    self._cv.notify_all()
        return n

    def close(self) -> None:
        if not self.closed:
            with self._cv:
                self._cv.wait_for(lambda: not self._want)
                self._stop = True
                self._cv.notify_all()
            self._thread.join()
            self._f.close()
        super().close()
        if self._error is not None:
            raise self._error


def gzip_file(src: Path, dst: Path, level: int) -> tuple[str, int]:
    """Compress `src` to `dst` (temp + fsync + rename); returns (content sha256, content size)."""
    h = hashlib.sha256()
    size = 0
    tmp = dst.with_name(dst.name + ".tmp")
    with open(src, "rb") as fin, io.BufferedWriter(SyncingFile(tmp), CHUNK) as raw, gzip.GzipFile(
        fileobj=raw, mode="wb", compresslevel=level, mtime=0
    ) as gz:
        while chunk := fin.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
            gz.write(chunk)
    publish(tmp, dst)
    return h.hexdigest(), size


def gunzip_file(src: Path | BinaryIO, dst: Path, limit: int | None = None) -> str:
    """Decompress `src` (a path or an open file) to `dst`, flushed as it goes; returns the content sha256.

    Raises on a bad stream, and (UnsafePath) on more than `limit` bytes of content: a gzip bomb.
    """
    limit = confine.MAX_MEMBER_BYTES if limit is None else limit
    h = hashlib.sha256()
    size = 0
    tmp = dst.with_name(dst.name + ".tmp")
    try:
        with gzip.open(src, "rb") as gz, io.BufferedWriter(SyncingFile(tmp), CHUNK) as out:
            while chunk := gz.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise confine.UnsafePath(str(dst.name), f"decompresses to more than {limit} bytes")
                h.update(chunk)
                out.write(chunk)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    publish(tmp, dst)
    return h.hexdigest()


def write_bytes(dst: Path, data: bytes) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    publish(tmp, dst)


# --- tars ------------------------------------------------------------------------------
def tar_gz_bytes(home: Path, rels: Iterable[str], level: int, skips: confine.Skips) -> tuple[bytes, bytes, int]:
    """(tar bytes, gzip of them, files added) of home/<rel> (confined, see `safetar.add_files`)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        n = safetar.add_files(tar, home, rels, skips, max_bytes=confine.MAX_SECRETS_BYTES)
    raw = buf.getvalue()
    return raw, gzip.compress(raw, compresslevel=level, mtime=0), n


def tar_gz_file(home: Path, rels: Iterable[str], dst: Path, level: int, skips: confine.Skips) -> tuple[str, int, int]:
    """(content sha256, content size, files added) of a gzipped tar of home/<rel> written to `dst`."""
    tmp_tar = dst.with_name(dst.name + ".tar-tmp")
    with tarfile.open(tmp_tar, mode="w", format=tarfile.PAX_FORMAT) as tar:
        n = safetar.add_files(tar, home, rels, skips)
    try:
        return (*gzip_file(tmp_tar, dst, level), n)
    finally:
        tmp_tar.unlink(missing_ok=True)


# --- git ---------------------------------------------------------------------------------
# Hardened git only (hivewire.safegit): a repo backed up may be an agent's config repo, so its
# config, hooks and attributes must never run; bundles are made without git opening the repo.
def _git(*args: str, cwd: Path | None = None, git_dir: Path | None = None,
         local: bool = False) -> subprocess.CompletedProcess[str]:
    return safegit.run(*args, cwd=cwd, git_dir=git_dir, local=local)


def git_bundle(repo: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    git_dir = repo / ".git" if os.path.lexists(repo / ".git") else repo
    try:
        made = safegit.bundle_create(git_dir, tmp)
    except HiveError as exc:
        raise RuntimeError(f"git bundle of {repo.name}: {exc.message}") from None
    if not made:
        raise Skip("repository has no commits")
    publish(tmp, dst)


def git_restore(bundle: Path, dest: Path) -> None:
    """Recreate a repo (every ref, and a checked-out work tree) from a bundle."""
    dest.mkdir(parents=True, exist_ok=True)
    r = _git("clone", "--quiet", "--mirror", str(bundle), str(dest / ".git"), local=True)
    if r.returncode != 0:
        raise RuntimeError(f"git clone from bundle failed: {r.stderr.strip()}")
    for args in (("config", "core.bare", "false"), ("remote", "remove", "origin"), ("checkout", "-f", "--quiet")):
        r = _git(*args, cwd=dest)
        if r.returncode != 0 and args[0] != "checkout":
            raise RuntimeError(f"git {' '.join(args)} failed: {r.stderr.strip()}")


def git_check(bundle: Path, scratch: Path) -> list[str]:
    r = _git("clone", "--quiet", "--bare", str(bundle), str(scratch), local=True)
    if r.returncode != 0:
        return [f"bundle does not clone: {r.stderr.strip()[:300]}"]
    r = _git("fsck", "--no-dangling", git_dir=scratch)
    return [] if r.returncode == 0 else [f"git fsck: {r.stderr.strip()[:300]}"]
