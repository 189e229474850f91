"""Snapshots: take, list, verify (sync code; the service runs it on a thread).

A snapshot is a directory `<local_dir>/<snapshot_id>/` holding one stored
object per source and `manifest.json`. It is built as `.<id>.partial`, the
manifest is written last, then the directory is renamed: a snapshot without a
manifest does not exist.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import socket
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import structlog

from hive_backup import archive, discover, keys
from hive_backup.config import Config
from hivewire.wire.backup import Snapshot, SnapshotFile, VerifyReply

log = structlog.get_logger("hive_backup.engine")

ProgressFn = Callable[[str, int, int, str], None]
SNAPSHOT_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
MANIFEST = "manifest.json"
VERIFY = "verify.json"
AGE_MAGIC = b"age-encryption.org/v1\n"


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
    return msgspec.json.decode((snapdir / MANIFEST).read_bytes(), type=Snapshot)


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
        except (msgspec.DecodeError, msgspec.ValidationError, OSError) as exc:
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
        items = discover.discover(self.home, self.cfg, classes)
        recipients = keys.load_recipients(self.home, self.cfg) if "secrets" in classes else []
        out = Outcome(Snapshot(snapshot_id=sid, created_at=created, classes=sorted(classes),
                               host=socket.gethostname(), recipients=recipients))
        snap = out.snapshot
        for i, item in enumerate(items):
            self._progress("snapshot", i, len(items), item.source)
            try:
                snap.files.append(self._take(item, work, recipients))
            except archive.Skip as why:
                snap.skipped.append(f"{item.source}: {why}")
                log.info("backup_item_skipped", source=item.source, reason=str(why))
            except Exception as exc:
                out.failed.append(f"{item.source}: {exc}")
                out.failed_classes.add(item.cls)
                snap.skipped.append(f"{item.source}: FAILED {exc}")
                log.error("backup_item_failed", snapshot_id=sid, source=item.source, cls=item.cls, error=str(exc))
        self._progress("snapshot", len(items), len(items), "manifest")
        snap.bytes = sum(f.stored_size for f in snap.files)
        snap.duration_s = round(time.monotonic() - started, 3)
        archive.write_bytes(work / MANIFEST, msgspec.json.encode(snap))  # last: completes the snapshot
        final = self.local_dir / sid
        os.rename(work, final)
        archive.fsync_dir(self.local_dir)
        log.info("backup_snapshot_written", snapshot_id=sid, files=len(snap.files), bytes=snap.bytes,
                 duration_s=snap.duration_s, failed=len(out.failed))
        return out

    def _take(self, item: discover.Item, work: Path, recipients: list[str]) -> SnapshotFile:
        level = self.cfg.compress_level
        if item.kind == "sqlite":
            name = f"db/{item.source}.gz"
            dst = work / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            copy = dst.with_name(dst.name + ".copy")
            try:
                archive.sqlite_copy(item.path, copy)
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
            files = discover.secret_files(self.home, self.cfg)
            raw, gz = archive.tar_gz_bytes(self.home, files, level)
            blob = keys.encrypt(gz, recipients)
            dst = work / "secrets.tar.gz.age"
            archive.write_bytes(dst, blob)
            return SnapshotFile(name=dst.name, source="secrets", sha256=hashlib.sha256(blob).hexdigest(),
                                size=len(raw), stored_size=len(blob), encrypted=True, kind="secrets",
                                cls=item.cls, content_sha256=hashlib.sha256(raw).hexdigest(),
                                rows={"files": len(files)})
        if item.kind == "tree":
            name = f"bulky/{item.source}.tar.gz"
            dst = work / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            secret = set(discover.secret_files(self.home, self.cfg))
            members = discover.tree_members(self.home, item.path, self.cfg, secret)
            if not members:
                raise archive.Skip("no files")
            content_sha, size = archive.tar_gz_file(self.home, members, dst, level)
            return SnapshotFile(name=name, source=item.source, sha256=archive.sha256_file(dst), size=size,
                                stored_size=dst.stat().st_size, kind="tree", cls=item.cls,
                                content_sha256=content_sha, rows={"files": len(members)})
        raise ValueError(f"unknown item kind {item.kind}")

    # --- verify ---------------------------------------------------------------------------
    def verify_dir(self, snapdir: Path, identity: str | None = None) -> VerifyReply:
        """sha256, decompress, open, integrity_check, row counts against the manifest."""
        sid = snapdir.name
        try:
            snap = read_manifest(snapdir)
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
        path = snapdir / f.name
        if not path.is_file():
            return ["missing"]
        if path.stat().st_size != f.stored_size:
            return [f"size {path.stat().st_size} != manifest {f.stored_size}"]
        sha = archive.sha256_file(path)
        if sha != f.sha256:
            return [f"sha256 mismatch: stored object is {sha[:16]}…, manifest says {f.sha256[:16]}…"]
        scratch = tmp / f"obj-{abs(hash(f.name))}"
        if f.kind == "sqlite":
            content = archive.gunzip_file(path, scratch)
            try:
                return check_db(scratch, f, content)
            finally:
                scratch.unlink(missing_ok=True)
        if f.kind == "git":
            return archive.git_check(path, scratch)
        if f.kind == "secrets":
            with open(path, "rb") as fh:
                if fh.read(len(AGE_MAGIC)) != AGE_MAGIC:
                    return ["not an age file"]
            if ident is None:
                return []
            raw = gzip.decompress(keys.decrypt(path.read_bytes(), ident))  # type: ignore[arg-type]
            if hashlib.sha256(raw).hexdigest() != f.content_sha256:
                return ["decrypted content sha256 mismatch"]
            with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
                tar.getmembers()
            return []
        if f.kind == "tree":
            content = archive.gunzip_file(path, scratch)
            try:
                with tarfile.open(scratch) as tar:
                    tar.getmembers()
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
