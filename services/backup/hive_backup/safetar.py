"""Tars in and out of a snapshot, confined.

Writing: members are opened with `confine.open_file` (no symlink followed, no
FIFO opened) and always stored as plain regular files (never hardlink
members), within the limits a restore accepts.

Reading: every member is checked before anything is written (`check_members`):
a confined relative name (`confine.check_relpath`), under the expected
prefix, a regular file or a directory only (no symlink, hardlink, device,
FIFO), no duplicates, Python's own `tarfile.data_filter` on top, and the
member count and size limits of `confine`. Then `extract` writes into a
scratch directory through directory fds (`O_NOFOLLOW`), creating files with
`O_EXCL`.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Iterable
from pathlib import Path

from hive_backup import confine
from hive_backup.confine import UnsafePath


# --- writing -------------------------------------------------------------------------------
def add_files(tar: tarfile.TarFile, home: Path, rels: Iterable[str], skips: confine.Skips,
              max_bytes: int | None = None) -> int:
    """Add the regular files home/<rel> as plain file members; returns how many went in."""
    max_bytes = confine.MAX_TAR_BYTES if max_bytes is None else max_bytes
    added = total = 0
    hfd = confine.open_root(home)
    try:
        for rel in rels:
            if added >= confine.MAX_TAR_MEMBERS:
                skips.add(rel, "too_many")
                continue
            try:
                fd, st = confine.open_file(hfd, rel)
            except confine.NotRegular as exc:
                skips.add(rel, exc.reason)
                continue
            except UnsafePath:
                skips.add(rel, "symlink")
                continue
            except FileNotFoundError:
                continue
            with os.fdopen(fd, "rb") as f:
                if st.st_size > confine.MAX_MEMBER_BYTES or total + st.st_size > max_bytes:
                    skips.add(rel, "too_large")
                    continue
                info = tarfile.TarInfo(rel)
                info.type = tarfile.REGTYPE
                info.size = st.st_size
                info.mode = stat.S_IMODE(st.st_mode)
                info.mtime = int(st.st_mtime)
                tar.addfile(info, f)
            added += 1
            total += st.st_size
    finally:
        os.close(hfd)
    return added


# --- reading -------------------------------------------------------------------------------
def gunzip_bytes(data: bytes, limit: int) -> bytes:
    """gzip-decompress at most `limit` bytes; raises UnsafePath beyond it (a gzip bomb)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(data, limit + 1)
    if len(out) > limit or d.unconsumed_tail:
        raise UnsafePath("<gzip stream>", f"decompresses to more than {limit} bytes")
    if not d.eof:
        raise ValueError("truncated gzip stream")
    return out


def check_members(tar: tarfile.TarFile, where: str, *, prefix: str | None = None,
                  max_bytes: int | None = None) -> list[tarfile.TarInfo]:
    """Every member, checked before anything is extracted; raises UnsafePath naming the first bad one."""
    max_bytes = confine.MAX_TAR_BYTES if max_bytes is None else max_bytes
    out: list[tarfile.TarInfo] = []
    seen: set[str] = set()
    total = 0
    for m in tar:
        if len(out) >= confine.MAX_TAR_MEMBERS:
            raise UnsafePath(where, f"more than {confine.MAX_TAR_MEMBERS} members")
        name = m.name
        confine.check_relpath(name, f"member of {where}")
        if not (m.isreg() or m.isdir()):
            kind = "symlink" if m.issym() else "hardlink" if m.islnk() else "device or FIFO"
            raise UnsafePath(name, f"{kind} member in {where}")
        if prefix is not None and name != prefix and not name.startswith(prefix + "/"):
            raise UnsafePath(name, f"member of {where} outside {prefix!r}")
        if name in seen:
            raise UnsafePath(name, f"duplicate member in {where}")
        seen.add(name)
        if m.size > confine.MAX_MEMBER_BYTES:
            raise UnsafePath(name, f"member of {where} larger than {confine.MAX_MEMBER_BYTES} bytes")
        total += m.size
        if total > max_bytes:
            raise UnsafePath(name, f"members of {where} add up to more than {max_bytes} bytes")
        try:  # Python's own extraction policy as well (3.11.4+)
            tarfile.data_filter(m, "/nonexistent-restore-root")
        except tarfile.FilterError as exc:
            raise UnsafePath(name, f"refused by tarfile's data filter ({exc})") from None
        out.append(m)
    return out


def extract(tar: tarfile.TarFile, members: list[tarfile.TarInfo], root: Path, *, private: bool = False) -> list[str]:
    """Write checked members under `root` (a fresh scratch dir) via dir fds; returns the file names."""
    dmode = 0o700 if private else 0o755
    out = []
    rfd = confine.open_root(root)
    try:
        for m in members:
            parts = confine.check_relpath(m.name)
            if m.isdir():
                os.close(confine.open_dir(rfd, parts, create=True, mode=dmode))
                continue
            dfd = confine.open_dir(rfd, parts[:-1], create=True, mode=dmode)
            try:
                mode = 0o600 if private else (stat.S_IMODE(m.mode) & 0o755) or 0o644
                fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                             mode, dir_fd=dfd)
                src = tar.extractfile(m)
                if src is None:
                    raise UnsafePath(m.name, "member has no data")
                with os.fdopen(fd, "wb") as out_f:
                    shutil.copyfileobj(src, out_f)
                    out_f.flush()
                    os.fchmod(out_f.fileno(), mode)
                    os.fsync(out_f.fileno())
                os.fsync(dfd)
            finally:
                os.close(dfd)
            out.append(m.name)
    finally:
        os.close(rfd)
    return out
