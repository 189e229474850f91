"""Snapshots: take, list, verify (sync code; the service runs it on a thread).

A snapshot is a directory `<local_dir>/<snapshot_id>/` holding one stored
object per source and `manifest.json`. It is built as `.<id>.partial`, the
manifest is written last, then the directory is renamed: a snapshot without a
manifest does not exist.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import socket
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import msgspec
import structlog

from hive_backup import archive, confine, discover, keys, metrics, safetar
from hive_backup.config import Config
from hivewire.wire.backup import Snapshot, SnapshotFile, VerifyReply

log = structlog.get_logger("hive_backup.engine")

ProgressFn = Callable[[str, int, int, str], None]
SNAPSHOT_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
MANIFEST = "manifest.json"
VERIFY = "verify.json"
AGE_MAGIC = b"age-encryption.org/v1\n"
SECRETS_OBJECT = "secrets.tar.gz.age"
OBJECT_NAME = {"sqlite": "db/{}.gz", "git": "repos/{}.bundle", "tree": "bulky/{}.tar.gz"}


class VerifyRecord(msgspec.Struct, kw_only=True):
    ok: bool
    at: float
    problems: list[str] = []
    drill: bool = False


def new_snapshot_id(now: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + os.urandom(3).hex()


def valid_snapshot_id(sid: str) -> bool:
    return bool(SNAPSHOT_ID.match(sid))


def read_manifest(snapdir: Path) -> Snapshot:
    """Decode `manifest.json` (a regular file, not a symlink, at most MAX_MANIFEST_BYTES); paths unchecked."""
    fd, st = confine.open_file(snapdir, MANIFEST)
    with os.fdopen(fd, "rb") as fh:
        if st.st_size > confine.MAX_MANIFEST_BYTES:
            raise confine.UnsafePath(MANIFEST, f"larger than {confine.MAX_MANIFEST_BYTES} bytes")
        return msgspec.json.decode(fh.read(confine.MAX_MANIFEST_BYTES + 1), type=Snapshot)


def check_manifest(snap: Snapshot) -> None:
    """Every path in a manifest is data: raises UnsafePath naming the first that is not what we write.

    Object names and sources are confined relative paths; each object name is
    exactly the one its kind and source give (`OBJECT_NAME`); no source under
    `backups/` or `backup/`; no duplicates; at most MAX_MANIFEST_FILES objects.
    """
    if len(snap.files) > confine.MAX_MANIFEST_FILES:
        raise confine.UnsafePath(snap.snapshot_id, f"manifest lists more than {confine.MAX_MANIFEST_FILES} objects")
    names: set[str] = set()
    sources: set[str] = set()
    for f in snap.files:
        confine.check_relpath(f.name, "object name")
        if f.kind == "secrets":
            if (f.name, f.source) != (SECRETS_OBJECT, "secrets"):
                raise confine.UnsafePath(f.name, "secrets object is not secrets.tar.gz.age")
        elif f.kind in OBJECT_NAME:
            parts = confine.check_relpath(f.source, "source")
            if parts[0] in confine.NEVER_RESTORED:
                raise confine.UnsafePath(f.source, "source under backups/ or backup/")
            if f.name != OBJECT_NAME[f.kind].format(f.source):
                raise confine.UnsafePath(f.name, f"object name does not match its source {f.source!r}")
        else:
            raise confine.UnsafePath(f.name, f"unknown object kind {f.kind!r}")
        if f.name in names or f.source in sources:
            raise confine.UnsafePath(f.source, "listed twice in the manifest")
        names.add(f.name)
        sources.add(f.source)


def open_object(snapdir: Path, f: SnapshotFile) -> tuple[int, os.stat_result]:
    """Read fd of a stored object: a regular file inside the snapshot dir, never through a symlink."""
    return confine.open_file(snapdir, f.name)


def refused(where: str, exc: Exception, **kw: object) -> None:
    metrics.REFUSED.inc()
    log.error("backup_unsafe_snapshot_refused", where=where, error=str(exc), **kw)


def list_dir(root: Path) -> list[Snapshot]:
    """Every complete snapshot under `root` (oldest first), with its verify result."""
    out = []
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        if not valid_snapshot_id(d.name) or not (d / MANIFEST).is_file():
            continue
        try:
            snap = read_manifest(d)
        except (msgspec.DecodeError, msgspec.ValidationError, OSError, ValueError) as exc:
            log.error("backup_manifest_unreadable", snapshot_id=d.name, error=str(exc))
            continue
        rec = read_verify(d)
        snap.verified = rec.ok if rec else None
        out.append(snap)
    return out


def read_verify(snapdir: Path) -> VerifyRecord | None:
    try:
        return msgspec.json.decode((snapdir / VERIFY).read_bytes(), type=VerifyRecord)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def write_verify(snapdir: Path, rec: VerifyRecord) -> None:
    archive.write_bytes(snapdir / VERIFY, msgspec.json.encode(rec))


@dataclass
class Outcome:
    snapshot: Snapshot
    failed: list[str] = field(default_factory=list)  # "source: error"
    failed_classes: set[str] = field(default_factory=set)


@dataclass
class Engine:
    home: Path
    cfg: Config
    progress: ProgressFn | None = None

    @property
    def local_dir(self) -> Path:
        return Path(self.cfg.local_dir) if self.cfg.local_dir else self.home / "backups"

    def _progress(self, step: str, done: int, total: int, item: str = "") -> None:
        if self.progress is not None:
            self.progress(step, done, total, item)

    # --- take ---------------------------------------------------------------------------
    def snapshot(self, classes: list[str], now: float | None = None) -> Outcome:
        started = time.monotonic()
        created = time.time() if now is None else now
        sid = new_snapshot_id(created)
        self.local_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        work = self.local_dir / f".{sid}.partial"
        work.mkdir(mode=0o700)
        skips = confine.Skips()
        items = discover.discover(self.home, self.cfg, classes, skips)
        recipients = keys.load_recipients(self.home, self.cfg) if "secrets" in classes else []
        out = Outcome(Snapshot(snapshot_id=sid, created_at=created, classes=sorted(classes),
                               host=socket.gethostname(), recipients=recipients))
        snap = out.snapshot
        for i, item in enumerate(items):
            self._progress("snapshot", i, len(items), item.source)
            try:
                snap.files.append(self._take(item, work, recipients, skips))
            except archive.Skip as why:
                snap.skipped.append(f"{item.source}: {why}")
                log.info("backup_item_skipped", source=item.source, reason=str(why))
            except Exception as exc:
                out.failed.append(f"{item.source}: {exc}")
                out.failed_classes.add(item.cls)
                snap.skipped.append(f"{item.source}: FAILED {exc}")
                log.error("backup_item_failed", snapshot_id=sid, source=item.source, cls=item.cls, error=str(exc))
        self._progress("snapshot", len(items), len(items), "manifest")
        if skips.found:
            counts = sorted(Counter(skips.found.values()).items())
            snap.skipped.append("files skipped (never followed or read): "
                                + ", ".join(f"{why}={n}" for why, n in counts))
        skips.report(sid)
        snap.bytes = sum(f.stored_size for f in snap.files)
        snap.duration_s = round(time.monotonic() - started, 3)
        archive.write_bytes(work / MANIFEST, msgspec.json.encode(snap))  # last: completes the snapshot
        final = self.local_dir / sid
        os.rename(work, final)
        archive.fsync_dir(self.local_dir)
        log.info("backup_snapshot_written", snapshot_id=sid, files=len(snap.files), bytes=snap.bytes,
                 duration_s=snap.duration_s, failed=len(out.failed))
        return out

    def _take(self, item: discover.Item, work: Path, recipients: list[str], skips: confine.Skips) -> SnapshotFile:
        level = self.cfg.compress_level
        if item.kind == "sqlite":
            name = f"db/{item.source}.gz"
            dst = work / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            copy = dst.with_name(dst.name + ".copy")
            try:
                try:  # a regular file reached without a symlink; sqlite must open that very file
                    fd, st = confine.open_file(self.home, item.source)
                except confine.NotRegular as exc:
                    skips.add(item.source, exc.reason)
                    raise archive.Skip(str(exc)) from None
                os.close(fd)
                archive.sqlite_copy(item.path, copy, expect=(st.st_dev, st.st_ino))
                rows, version = archive.describe_db(copy)
                content_sha, size = archive.gzip_file(copy, dst, level)
            finally:
                copy.unlink(missing_ok=True)
            return SnapshotFile(name=name, source=item.source, sha256=archive.sha256_file(dst), size=size,
                                stored_size=dst.stat().st_size, rows=rows, schema_version=version,
                                kind="sqlite", cls=item.cls, content_sha256=content_sha)
        if item.kind == "git":
            name = f"repos/{item.source}.bundle"
            dst = work / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            archive.git_bundle(item.path, dst)
            sha = archive.sha256_file(dst)
            size = dst.stat().st_size
            return SnapshotFile(name=name, source=item.source, sha256=sha, size=size, stored_size=size,
                                kind="git", cls=item.cls, content_sha256=sha)
        if item.kind == "secrets":
            files = discover.secret_files(self.home, self.cfg, skips)
            raw, gz, added = archive.tar_gz_bytes(self.home, files, level, skips)
            blob = keys.encrypt(gz, recipients)
            dst = work / "secrets.tar.gz.age"
            archive.write_bytes(dst, blob)
            return SnapshotFile(name=dst.name, source="secrets", sha256=hashlib.sha256(blob).hexdigest(),
                                size=len(raw), stored_size=len(blob), encrypted=True, kind="secrets",
                                cls=item.cls, content_sha256=hashlib.sha256(raw).hexdigest(),
                                rows={"files": added})
        if item.kind == "tree":
            name = f"bulky/{item.source}.tar.gz"
            dst = work / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            secret = set(discover.secret_files(self.home, self.cfg, skips))
            members = discover.tree_members(self.home, item.source, self.cfg, secret, skips)
            if not members:
                raise archive.Skip("no files")
            content_sha, size, added = archive.tar_gz_file(self.home, members, dst, level, skips)
            return SnapshotFile(name=name, source=item.source, sha256=archive.sha256_file(dst), size=size,
                                stored_size=dst.stat().st_size, kind="tree", cls=item.cls,
                                content_sha256=content_sha, rows={"files": added})
        raise ValueError(f"unknown item kind {item.kind}")

    # --- verify ---------------------------------------------------------------------------
    def verify_dir(self, snapdir: Path, identity: str | None = None) -> VerifyReply:
        """sha256, decompress, open, integrity_check, row counts against the manifest."""
        sid = snapdir.name
        try:
            snap = read_manifest(snapdir)
            check_manifest(snap)
        except confine.UnsafePath as exc:
            refused("verify", exc, snapshot_id=sid)
            return VerifyReply(snapshot_id=sid, ok=False, problems=[f"manifest: {exc}"])
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            return VerifyReply(snapshot_id=sid, ok=False, problems=[f"manifest: {exc}"])
        ident = keys.load_identity(identity) if identity else None
        problems: list[str] = []
        with tempfile.TemporaryDirectory(prefix="hive-verify-") as tmp:
            for i, f in enumerate(snap.files):
                self._progress("verify", i, len(snap.files), f.source)
                try:
                    problems += [f"{f.name}: {p}" for p in self._check(snapdir, f, Path(tmp), ident)]
                except Exception as exc:  # a broken object must fail verify, not crash it
                    problems.append(f"{f.name}: {type(exc).__name__}: {exc}")
            self._progress("verify", len(snap.files), len(snap.files), "")
        return VerifyReply(snapshot_id=sid, ok=not problems, problems=problems, checked=len(snap.files))

    def _check(self, snapdir: Path, f: SnapshotFile, tmp: Path, ident: object) -> list[str]:
        try:
            fd, st = open_object(snapdir, f)
        except FileNotFoundError:
            return ["missing"]
        except confine.UnsafePath as exc:
            refused("verify", exc, snapshot_id=snapdir.name)
            return [str(exc)]
        with os.fdopen(fd, "rb") as obj:
            if st.st_size != f.stored_size:
                return [f"size {st.st_size} != manifest {f.stored_size}"]
            sha = archive.sha256_fileobj(obj)
            if sha != f.sha256:
                return [f"sha256 mismatch: stored object is {sha[:16]}…, manifest says {f.sha256[:16]}…"]
            obj.seek(0)
            try:
                return self._check_content(obj, snapdir / f.name, f, tmp / f"obj-{abs(hash(f.name))}", ident)
            except confine.UnsafePath as exc:
                refused("verify", exc, snapshot_id=snapdir.name, object=f.name)
                return [str(exc)]

    def _check_content(self, obj: BinaryIO, path: Path, f: SnapshotFile, scratch: Path, ident: object) -> list[str]:
        if f.kind == "sqlite":
            content = archive.gunzip_file(obj, scratch)
            try:
                return check_db(scratch, f, content)
            finally:
                scratch.unlink(missing_ok=True)
        if f.kind == "git":
            return archive.git_check(path, scratch)
        if f.kind == "secrets":
            data = obj.read()
            if not data.startswith(AGE_MAGIC):
                return ["not an age file"]
            if ident is None:
                return []
            raw = safetar.gunzip_bytes(keys.decrypt(data, ident), confine.MAX_SECRETS_BYTES)  # type: ignore[arg-type]
            if hashlib.sha256(raw).hexdigest() != f.content_sha256:
                return ["decrypted content sha256 mismatch"]
            with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
                safetar.check_members(tar, f.name, max_bytes=confine.MAX_SECRETS_BYTES)
            return []
        if f.kind == "tree":
            content = archive.gunzip_file(obj, scratch, limit=confine.MAX_TAR_STREAM)
            try:
                with tarfile.open(scratch) as tar:
                    safetar.check_members(tar, f.name, prefix=f.source)
                return [] if content == f.content_sha256 else ["content sha256 mismatch"]
            finally:
                scratch.unlink(missing_ok=True)
        return [f"unknown kind {f.kind}"]

    def snapdir(self, sid: str) -> Path:
        if not valid_snapshot_id(sid):
            raise ValueError(f"not a snapshot id: {sid!r}")
        return self.local_dir / sid

    def remove(self, root: Path, sid: str) -> None:
        d = root / sid
        if not valid_snapshot_id(sid) or not d.is_dir():
            return
        (d / MANIFEST).unlink(missing_ok=True)  # incomplete from the first step on
        archive.fsync_dir(d)
        shutil.rmtree(d)


def check_db(path: Path, f: SnapshotFile, content_sha: str) -> list[str]:
    problems = []
    if f.content_sha256 and content_sha != f.content_sha256:
        problems.append("decompressed content sha256 mismatch")
    problems += [f"integrity_check: {p}" for p in archive.integrity_problems(path)]
    if problems:
        return problems
    rows, version = archive.describe_db(path)
    for table, n in f.rows.items():
        if rows.get(table) != n:
            problems.append(f"rows in {table}: {rows.get(table)} != manifest {n}")
    if version != f.schema_version:
        problems.append(f"schema_version {version} != manifest {f.schema_version}")
    return problems
