"""The backup operations, shared by the micro service and the offline CLI.

Blocking work (sqlite copies, compression, hashing, git) runs on a thread;
one snapshot at a time.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from hive_backup import metrics, restore, retention, targets
from hive_backup.config import CLASSES, Config
from hive_backup.engine import Engine, VerifyRecord, list_dir, read_verify, valid_snapshot_id, write_verify
from hivewire.errors import HiveError
from hivewire.wire.backup import BackupDone, PruneReply, RestoreReply, Snapshot, VerifyReply

log = structlog.get_logger("hive_backup.ops")

PARTIAL_MAX_AGE_S = 24 * 3600
DoneFn = Callable[[BackupDone], Any]


class Backups:
    def __init__(self, home: Path, cfg: Config, *, nc: Any = None, progress: Any = None) -> None:
        self.home = home
        self.cfg = cfg
        self.nc = nc
        self.engine = Engine(home, cfg, progress=progress)
        self.lock = asyncio.Lock()
        # agents on other hosts: their files are pulled into HIVE_HOME/remote/ first (hive_backup.remote)
        self.pull_remote: Callable[[], Awaitable[list[str]]] | None = None

    # --- targets --------------------------------------------------------------------
    def _dir(self, target: str) -> Path | None:
        if target == "local":
            return self.engine.local_dir
        if target == "jetstream":
            return None
        if target in self.cfg.targets and Path(target).is_absolute():
            return Path(target)
        raise HiveError("bad_request", f"unknown target {target!r} (configured: local, {', '.join(self.cfg.targets)})")

    def _objstore(self) -> targets.ObjectStoreTarget:
        if self.nc is None:
            raise HiveError("unavailable", "the jetstream target needs a NATS connection")
        return targets.ObjectStoreTarget(self.nc, self.cfg.jetstream_bucket)

    def last_success(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for snap in list_dir(self.engine.local_dir):
            failed = {s.split(":", 1)[0] for s in snap.skipped if ": FAILED" in s}
            if snap.verified is False or failed:
                continue
            for cls in snap.classes:
                out[cls] = max(out.get(cls, 0.0), snap.created_at)
        return out

    def refresh_gauges(self) -> None:
        for cls, ts in self.last_success().items():
            metrics.LAST_SUCCESS.labels(cls).set(ts)
        metrics.SNAPSHOTS.set(len(list_dir(self.engine.local_dir)))

    # --- run ----------------------------------------------------------------------------
    async def run(self, classes: list[str] | None = None, on_done: DoneFn | None = None) -> Snapshot:
        classes = list(classes or self.cfg.enabled_classes() or CLASSES)
        bad = [c for c in classes if c not in CLASSES]
        if bad:
            raise HiveError("bad_request", f"unknown backup class {bad[0]!r} (known: {', '.join(CLASSES)})")
        async with self.lock:
            started = time.monotonic()
            if self.pull_remote is not None and {"databases", "secrets", "bulky"} & set(classes):
                await self.pull_remote()  # what it could not refresh is logged and counted; the rest goes on
            try:
                out = await asyncio.to_thread(self.engine.snapshot, classes)
            except Exception as exc:
                metrics.FAILURES.labels("snapshot").inc()
                log.error("backup_failed", classes=classes, error=str(exc))
                if on_done:
                    await on_done(BackupDone(snapshot_id="", ok=False, duration_s=time.monotonic() - started,
                                             bytes=0, error=str(exc), classes=classes))
                raise HiveError("internal", f"snapshot failed: {exc}") from None
            snap = out.snapshot
            snapdir = self.engine.local_dir / snap.snapshot_id
            errors = list(out.failed)
            snap.verified = await self._check_new(snapdir)
            if snap.verified is False:
                errors.append("verify/drill failed")
            errors += await self._replicate(snapdir)
            duration = time.monotonic() - started
            metrics.DURATION.observe(duration)
            metrics.LAST_BYTES.set(snap.bytes)
            metrics.BYTES.inc(snap.bytes)
            if snap.verified is not False:
                for cls in set(classes) - out.failed_classes:
                    metrics.LAST_SUCCESS.labels(cls).set(snap.created_at)
            if self.cfg.prune_after_run and not errors:
                try:
                    await self._prune_all()
                except Exception as exc:
                    metrics.FAILURES.labels("prune").inc()
                    log.error("backup_prune_failed", error=str(exc))
            self.refresh_gauges()
            done = BackupDone(snapshot_id=snap.snapshot_id, ok=not errors, duration_s=round(duration, 3),
                              bytes=snap.bytes, error="; ".join(errors) or None, classes=snap.classes,
                              verified=snap.verified)
            (log.info if done.ok else log.error)("backup_done", **{k: v for k, v in _fields(done).items()})
            if on_done:
                await on_done(done)
            return snap

    async def _check_new(self, snapdir: Path) -> bool | None:
        if not self.cfg.drill:
            return None
        rep = await asyncio.to_thread(self.engine.verify_dir, snapdir)
        metrics.VERIFY.labels("verify", "ok" if rep.ok else "failed").inc()
        problems = list(rep.problems)
        if rep.ok:
            drill = await asyncio.to_thread(restore.drill, self.engine, snapdir)
            metrics.VERIFY.labels("drill", "ok" if not drill else "failed").inc()
            problems += [f"drill: {p}" for p in drill]
        ok = not problems
        metrics.LAST_VERIFY_OK.set(1 if ok else 0)
        await asyncio.to_thread(write_verify, snapdir, VerifyRecord(ok=ok, at=time.time(), problems=problems,
                                                                    drill=True))
        if ok:
            log.info("backup_restore_drill_ok", snapshot_id=snapdir.name)
        else:
            metrics.FAILURES.labels("drill").inc()
            log.error("backup_restore_drill_failed", snapshot_id=snapdir.name, problems=problems)
        return ok

    async def _replicate(self, snapdir: Path) -> list[str]:
        errors = []
        for t in self.cfg.targets:
            if t == "local":
                continue
            if t == "jetstream" and self.nc is None:
                log.warning("backup_jetstream_skipped", snapshot_id=snapdir.name, reason="no NATS connection (offline)")
                continue
            try:
                if t == "jetstream":
                    await self._objstore().put(snapdir)
                else:
                    await asyncio.to_thread(targets.copy_to_dir, snapdir, Path(t))
            except Exception as exc:
                metrics.FAILURES.labels("replicate").inc()
                log.error("backup_replicate_failed", target=t, snapshot_id=snapdir.name, error=str(exc))
                errors.append(f"target {t}: {exc}")
        return errors

    # --- list / verify / restore ----------------------------------------------------------
    async def list(self, target: str = "local") -> list[Snapshot]:
        root = self._dir(target)
        snaps = await self._objstore().list() if root is None else await asyncio.to_thread(list_dir, root)
        for s in snaps:
            s.target = target
        return sorted(snaps, key=lambda s: s.created_at, reverse=True)

    async def _located(self, sid: str, target: str, scratch: Path) -> Path:
        if not valid_snapshot_id(sid):
            raise HiveError("bad_request", f"not a snapshot id: {sid!r}")
        root = self._dir(target)
        if root is None:
            try:
                return await self._objstore().fetch(sid, scratch)
            except FileNotFoundError:
                raise HiveError("not_found", f"no snapshot {sid} in jetstream") from None
        d = root / sid
        if not (d / "manifest.json").is_file():
            raise HiveError("not_found", f"no complete snapshot {sid} in {target}")
        return d

    async def verify(self, sid: str, target: str = "local", identity: str | None = None) -> VerifyReply:
        _check_identity(identity)
        with tempfile.TemporaryDirectory(prefix="hive-fetch-") as tmp:
            d = await self._located(sid, target, Path(tmp))
            rep = await asyncio.to_thread(self.engine.verify_dir, d, identity)
            if target != "jetstream":
                await asyncio.to_thread(write_verify, d, VerifyRecord(ok=rep.ok, at=time.time(),
                                                                      problems=rep.problems))
        metrics.VERIFY.labels("verify", "ok" if rep.ok else "failed").inc()
        if rep.ok:
            log.info("backup_verify_ok", snapshot_id=sid, target=target, checked=rep.checked)
        else:
            metrics.FAILURES.labels("verify").inc()
            log.error("backup_verify_failed", snapshot_id=sid, target=target, problems=rep.problems)
        return rep

    async def restore(self, sid: str, dest: str, *, identity: str | None = None, in_place: bool = False,
                      only: list[str] | None = None, target: str = "local") -> RestoreReply:
        _check_identity(identity)
        if not dest or not Path(dest).is_absolute():
            raise HiveError("bad_request", "dest must be an absolute path")
        with tempfile.TemporaryDirectory(prefix="hive-fetch-") as tmp:
            d = await self._located(sid, target, Path(tmp))
            try:
                return await asyncio.to_thread(restore.restore, self.engine, d, Path(dest), identity=identity,
                                               in_place=in_place, only=only or None)
            except HiveError:
                raise
            except Exception as exc:
                metrics.FAILURES.labels("restore").inc()
                log.error("backup_restore_failed", snapshot_id=sid, dest=dest, error=str(exc))
                raise HiveError("internal", f"restore failed: {exc}") from None

    # --- prune ------------------------------------------------------------------------------
    async def prune(self, target: str = "local", dry_run: bool = False) -> PruneReply:
        snaps = await self.list(target)
        entries = [retention.Entry(s.snapshot_id, s.created_at, tuple(s.classes), s.verified) for s in snaps]
        keep = retention.select(entries, self.cfg.retention)
        rep = PruneReply(kept=sorted(keep), deleted=sorted(e.snapshot_id for e in entries if e.snapshot_id not in keep))
        if dry_run:
            return rep
        root = self._dir(target)
        for sid in rep.deleted:
            if root is None:
                await self._objstore().delete(sid)
            else:
                await asyncio.to_thread(self.engine.remove, root, sid)
        if root is not None:
            _clean_partials(root)
        if rep.deleted:
            log.info("backup_pruned", target=target, deleted=rep.deleted, kept=len(rep.kept))
        return rep

    async def _prune_all(self) -> None:
        for t in ["local", *[t for t in self.cfg.targets if t != "local"]]:
            await self.prune(t)


def _clean_partials(root: Path) -> None:
    for d in root.glob(".*.partial"):
        if time.time() - d.stat().st_mtime > PARTIAL_MAX_AGE_S:
            shutil.rmtree(d, ignore_errors=True)


def _check_identity(identity: str | None) -> None:
    if identity is not None and (not Path(identity).is_absolute() or not Path(identity).is_file()):
        raise HiveError("bad_request", "identity must be the absolute path of an age identity file")


def _fields(done: BackupDone) -> dict[str, Any]:
    return {f: getattr(done, f) for f in done.__struct_fields__}


__all__ = ["Backups", "read_verify"]
