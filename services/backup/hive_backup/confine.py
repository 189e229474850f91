"""Confinement: snapshot paths are data, agent dirs are never walked through a symlink.

Agents run Bash inside `agents/<name>/state` and `.../creds`, so anything
there is attacker input: symlinks (to `nats/creds`, `/etc/shadow`), FIFOs,
device nodes, huge files, odd names. Snapshots on a target may be tampered
with too. So:

- every path read from a manifest or a tar member goes through
  `check_relpath` (relative, no `.`/`..`/empty component, no NUL, bounded);
- files are opened by walking from a trusted root fd one component at a time
  with `O_NOFOLLOW | O_DIRECTORY` (`open_dir`), the leaf with `O_NOFOLLOW |
  O_NONBLOCK` after an `lstat` said it is a regular file (`open_file`): a
  symlink anywhere on the way, or swapped in after listing, is refused, and a
  FIFO is never opened for a blocking read;
- discovery records a symlink, FIFO, socket or device as nothing: it is
  skipped, counted in `hive_backup_skipped_files_total{reason}` and logged
  once per snapshot (`Skips.report`).

Every limit is here, so what a snapshot writes is always something a restore
accepts.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from hive_backup import metrics

log = structlog.get_logger("hive_backup.confine")

# --- limits: the one place ----------------------------------------------------------
MAX_MANIFEST_BYTES = 64 << 20  # manifest.json
MAX_MANIFEST_FILES = 100_000  # objects in one snapshot
MAX_TAR_MEMBERS = 200_000  # members of one tar (a bulky tree, the secrets)
MAX_MEMBER_BYTES = 16 << 30  # one file in a tar, one decompressed database
MAX_TAR_BYTES = 64 << 30  # all members of one tar
MAX_TAR_STREAM = MAX_TAR_BYTES + (1 << 30)  # a decompressed tar: members plus headers
MAX_SECRETS_BYTES = 256 << 20  # the secrets tar is decrypted in memory
MAX_PATH_CHARS = 4096
MAX_NAME_BYTES = 255
MAX_DEPTH = 64  # directory levels below a walked root
NEVER_RESTORED = ("backups", "backup")  # our targets, config and keys

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class UnsafePath(ValueError):
    """A path that is not confined; the message names it."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"{why}: {path!r}")
        self.path = path
        self.why = why


class NotRegular(UnsafePath):
    """A symlink, FIFO, socket or device where a regular file was expected."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, f"not a regular file ({reason})")
        self.reason = reason  # symlink | special


def check_relpath(name: object, what: str = "path") -> tuple[str, ...]:
    """The components of a relative path that stays below its root; raises UnsafePath."""
    if not isinstance(name, str) or not name:
        raise UnsafePath(repr(name), f"{what} is empty or not a string")
    if "\x00" in name:
        raise UnsafePath(name, f"{what} contains NUL")
    if len(name) > MAX_PATH_CHARS:
        raise UnsafePath(name[:80] + "…", f"{what} is longer than {MAX_PATH_CHARS}")
    if name.startswith("/"):
        raise UnsafePath(name, f"{what} is absolute")
    parts = tuple(name.split("/"))
    for p in parts:
        if p in ("", ".", ".."):
            raise UnsafePath(name, f"{what} has a {p or 'empty'!r} component")
        if len(p.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise UnsafePath(name, f"{what} has a component longer than {MAX_NAME_BYTES} bytes")
    return parts


def open_root(path: Path) -> int:
    """A trusted root (HIVE_HOME, a snapshot dir, a restore scratch dir): may itself be a symlink."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def open_dir(root_fd: int, parts: tuple[str, ...] | list[str], *, create: bool = False, mode: int = 0o700) -> int:
    """fd of root/parts, refusing a symlink or non-directory at any step (mkdir missing ones if `create`)."""
    fd = os.dup(root_fd)
    try:
        for i, part in enumerate(parts):
            try:
                try:
                    nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(part, mode, dir_fd=fd)
                    except FileExistsError:
                        pass
                    nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafePath("/".join(parts[: i + 1]), "a symlink or non-directory on the way") from None
                raise
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _root_fd(root: Path | int) -> tuple[int, bool]:
    return (root, False) if isinstance(root, int) else (open_root(root), True)


def lstat_under(root: Path | int, rel: str) -> os.stat_result:
    """lstat of root/rel, with no symlink among its parents (UnsafePath); FileNotFoundError if absent."""
    parts = check_relpath(rel)
    rfd, own = _root_fd(root)
    try:
        dfd = open_dir(rfd, parts[:-1])
    finally:
        if own:
            os.close(rfd)
    try:
        return os.lstat(parts[-1], dir_fd=dfd)
    finally:
        os.close(dfd)


def open_file(root: Path | int, rel: str) -> tuple[int, os.stat_result]:
    """A blocking read fd on the regular file root/rel, never through a symlink; raises NotRegular."""
    parts = check_relpath(rel)
    rfd, own = _root_fd(root)
    try:
        dfd = open_dir(rfd, parts[:-1])
    finally:
        if own:
            os.close(rfd)
    try:
        st = os.lstat(parts[-1], dir_fd=dfd)
        if stat.S_ISLNK(st.st_mode):
            raise NotRegular(rel, "symlink")
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(rel, "special")  # never opened: a FIFO would block, a device has side effects
        try:
            fd = os.open(parts[-1], FILE_FLAGS, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # swapped for a symlink since the lstat
                raise NotRegular(rel, "symlink") from None
            raise
    finally:
        os.close(dfd)
    fst = os.fstat(fd)
    if not stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise NotRegular(rel, "special")  # swapped since the lstat (a FIFO opens at once with O_NONBLOCK)
    os.set_blocking(fd, True)
    return fd, fst


def read_head(root: Path | int, rel: str, n: int) -> bytes:
    fd, _ = open_file(root, rel)
    with os.fdopen(fd, "rb") as f:
        return f.read(n)


def fds_on(dev: int, ino: int) -> set[int]:
    """This process's fds open on the file (dev, ino), from /proc/self/fd (Linux)."""
    out = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            st = os.stat(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (dev, ino):
            out.add(int(name))
    return out


# --- skipped files, reported once per snapshot -----------------------------------------
@dataclass
class Skips:
    """Paths (relative to HIVE_HOME) discovery left out, with why: symlink, special, too_large, too_many, too_deep."""

    found: dict[str, str] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)

    def add(self, rel: str, reason: str) -> None:
        self.found.setdefault(rel, reason)

    def report(self, snapshot_id: str = "") -> None:
        new = {r: why for r, why in self.found.items() if r not in self.reported}
        if not new:
            return
        self.reported.update(new)
        counts = Counter(new.values())
        for reason, n in counts.items():
            metrics.SKIPPED.labels(reason).inc(n)
        log.warning("backup_files_skipped", snapshot_id=snapshot_id, counts=dict(counts),
                    sample=[f"{r} ({why})" for r, why in list(new.items())[:20]])


def walk_files(home: Path, rel_root: str, skips: Skips) -> list[str]:
    """Regular files under home/rel_root (relative to home, sorted), never through a symlink.

    Symlinks (to files or dirs), FIFOs, sockets and devices are recorded in
    `skips`, never followed or opened; so are files over MAX_MEMBER_BYTES,
    files past MAX_TAR_MEMBERS and dirs deeper than MAX_DEPTH.
    """
    root_parts = check_relpath(rel_root)
    out: list[str] = []
    stack: list[tuple[str, ...]] = [root_parts]
    hfd = open_root(home)
    try:
        while stack:
            parts = stack.pop()
            rel = "/".join(parts)
            try:
                dfd = open_dir(hfd, parts)
            except UnsafePath:
                skips.add(rel, "symlink")
                continue
            except FileNotFoundError:
                continue
            try:
                with os.scandir(dfd) as it:
                    names = sorted(e.name for e in it)
                for name in names:
                    r = f"{rel}/{name}"
                    try:
                        st = os.lstat(name, dir_fd=dfd)
                    except FileNotFoundError:
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        if len(parts) - len(root_parts) >= MAX_DEPTH:
                            skips.add(r, "too_deep")
                        else:
                            stack.append((*parts, name))
                    elif stat.S_ISLNK(st.st_mode):
                        skips.add(r, "symlink")
                    elif not stat.S_ISREG(st.st_mode):
                        skips.add(r, "special")
                    elif st.st_size > MAX_MEMBER_BYTES:
                        skips.add(r, "too_large")
                    elif len(out) >= MAX_TAR_MEMBERS:
                        skips.add(r, "too_many")
                    else:
                        out.append(r)
            finally:
                os.close(dfd)
    finally:
        os.close(hfd)
    return sorted(out)


def list_dir(home: Path, parts: tuple[str, ...], skips: Skips) -> list[str]:
    """Names in home/parts (sorted); [] if absent or not a dir; reached through a symlink: [] and recorded."""
    try:
        hfd = open_root(home)
    except OSError:
        return []
    try:
        fd = open_dir(hfd, parts)
    except UnsafePath:
        skips.add("/".join(parts), "symlink")
        return []
    except OSError:
        return []
    finally:
        os.close(hfd)
    try:
        with os.scandir(fd) as it:
            return sorted(e.name for e in it)
    finally:
        os.close(fd)


def subdirs(home: Path, parts: tuple[str, ...], skips: Skips) -> list[tuple[str, ...]]:
    """Every real directory below home/parts (not itself), never through a symlink, at most MAX_DEPTH deep."""
    out: list[tuple[str, ...]] = []
    stack = [parts]
    while stack:
        base = stack.pop()
        for name in list_dir(home, base, skips):
            try:
                st = lstat_under(home, "/".join((*base, name)))
            except (OSError, UnsafePath):
                continue
            if stat.S_ISDIR(st.st_mode):
                if len(base) - len(parts) >= MAX_DEPTH:
                    skips.add("/".join((*base, name)), "too_deep")
                    continue
                out.append((*base, name))
                stack.append((*base, name))
    return out


def glob(home: Path, pattern: str, skips: Skips) -> list[Path]:
    """`home.glob(pattern)` (`*`, `?`, `[..]` per component, `**` for any depth), confined:
    no directory is listed through a symlink, and `**` never descends into one."""
    parts = check_relpath(pattern, "glob")
    found: list[tuple[str, ...]] = [()]
    for comp in parts:
        nxt: list[tuple[str, ...]] = []
        for base in found:
            if comp == "**":
                nxt += [base, *subdirs(home, base, skips)]
            elif not any(c in comp for c in "*?["):
                nxt.append((*base, comp))
            else:
                nxt += [(*base, n) for n in list_dir(home, base, skips) if fnmatch.fnmatchcase(n, comp)]
        found = list(dict.fromkeys(nxt))
    return sorted(home.joinpath(*f) for f in found if f)
