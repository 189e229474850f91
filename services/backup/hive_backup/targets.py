"""Where snapshots are copied: another directory, or the JetStream object store.

Both write every object first and the manifest last; a reader treats a
snapshot without a manifest as absent.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import msgspec
import structlog

from hive_backup import archive
from hive_backup.engine import MANIFEST, VERIFY, list_dir, read_manifest, valid_snapshot_id
from hivewire.wire.backup import Snapshot

log = structlog.get_logger("hive_backup.targets")


def copy_to_dir(snapdir: Path, root: Path) -> Path:
    """Copy a complete snapshot dir under `root` (objects, then manifest, then rename)."""
    snap = read_manifest(snapdir)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    work = root / f".{snap.snapshot_id}.partial"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(mode=0o700)
    for f in snap.files:
        dst = work / f.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copyfile(snapdir / f.name, tmp)
        archive.publish(tmp, dst)
        if archive.sha256_file(dst) != f.sha256:
            raise OSError(f"{root}: copy of {f.name} does not match its sha256")
    for extra in (MANIFEST, VERIFY):
        if (snapdir / extra).exists():
            tmp = work / (extra + ".tmp")
            shutil.copyfile(snapdir / extra, tmp)
            archive.publish(tmp, work / extra)
    final = root / snap.snapshot_id
    if final.exists():
        shutil.rmtree(final)
    os.rename(work, final)
    archive.fsync_dir(root)
    return final


class ObjectStoreTarget:
    """JetStream object store bucket; objects are `<snapshot_id>/<name>`."""

    def __init__(self, nc: Any, bucket: str = "hive-backups") -> None:
        self.nc = nc
        self.bucket = bucket
        self._store: Any = None

    async def store(self) -> Any:
        if self._store is None:
            js = self.nc.jetstream()
            try:
                self._store = await js.object_store(self.bucket)
            except Exception:
                self._store = await js.create_object_store(self.bucket, description="Hive backups")
        return self._store

    async def put(self, snapdir: Path) -> None:
        snap = read_manifest(snapdir)
        st = await self.store()
        for f in snap.files:
            with open(snapdir / f.name, "rb") as fh:
                await st.put(f"{snap.snapshot_id}/{f.name}", fh)
        if (snapdir / VERIFY).exists():
            await st.put(f"{snap.snapshot_id}/{VERIFY}", (snapdir / VERIFY).read_bytes())
        await st.put(f"{snap.snapshot_id}/{MANIFEST}", (snapdir / MANIFEST).read_bytes())  # last
        log.info("backup_copied_to_jetstream", snapshot_id=snap.snapshot_id, bucket=self.bucket)

    async def _names(self) -> list[str]:
        st = await self.store()
        try:
            infos = await st.list()
        except Exception:  # nats-py raises NotFoundError on an empty bucket
            return []
        return [i.name for i in infos if not getattr(i, "deleted", False)]

    async def list(self) -> list[Snapshot]:
        st = await self.store()
        out = []
        for name in sorted(await self._names()):
            sid, _, leaf = name.partition("/")
            if leaf != MANIFEST or not valid_snapshot_id(sid):
                continue
            res = await st.get(name)
            try:
                out.append(msgspec.json.decode(res.data, type=Snapshot))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.error("backup_manifest_unreadable", target="jetstream", snapshot_id=sid, error=str(exc))
        return out

    async def fetch(self, sid: str, into: Path) -> Path:
        """Download a snapshot into `into/<sid>` (same layout as a dir target)."""
        st = await self.store()
        names = [n for n in await self._names() if n.startswith(f"{sid}/")]
        if f"{sid}/{MANIFEST}" not in names:
            raise FileNotFoundError(sid)
        d = into / sid
        for name in names:
            leaf = name.partition("/")[2]
            if leaf.startswith("/") or ".." in Path(leaf).parts:
                raise ValueError(f"unsafe object name {name!r}")
            dst = d / leaf
            dst.parent.mkdir(parents=True, exist_ok=True)
            with open(dst, "wb") as fh:
                await st.get(name, writeinto=fh)
        return d

    async def delete(self, sid: str) -> None:
        st = await self.store()
        names = [n for n in await self._names() if n.startswith(f"{sid}/")]
        manifest = f"{sid}/{MANIFEST}"
        if manifest in names:  # first, so a half-deleted snapshot is never listed
            await st.delete(manifest)
        for name in names:
            if name != manifest:
                await st.delete(name)


def list_target_dir(root: Path) -> list[Snapshot]:
    return list_dir(root)


async def to_thread_copy(snapdir: Path, root: Path) -> Path:
    return await asyncio.to_thread(copy_to_dir, snapdir, root)
