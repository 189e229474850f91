"""Copying an agent's files out and archives in without following anything an agent planted (issue 21).

- `copy_tree` walks with directory fds (`os.fwalk`, no symlink followed) and
  opens every file `O_NOFOLLOW`: a symlink, fifo, socket or device is left
  out (and reported), so `state/x -> HIVE_HOME/nats/creds` copies nothing.
- `extract_checked` extracts a tar into an empty directory of ours, member by
  member through directory fds, refusing (HiveError bad_request, the reason
  in the message) anything but plain files and directories under the allowed
  top-level names: no absolute path, no `..`, no `.git`, no duplicate, no
  link or device, at most `max_members` members and `max_bytes` bytes. The
  caller extracts into a temp dir and throws it away on refusal, so a refused
  archive changes nothing.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

from hivewire import config
from hivewire.errors import HiveError

MAX_IMPORT_BYTES = 2 * 1024**3
MAX_IMPORT_MEMBERS = 100_000
_CHUNK = 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def limits() -> tuple[int, int]:
    """(max bytes, max members) of an import: HIVE_IMPORT_MAX_BYTES / HIVE_IMPORT_MAX_MEMBERS or the defaults."""
    return config.IMPORT_MAX_BYTES.get(), config.IMPORT_MAX_MEMBERS.get()


def is_git_name(part: str) -> bool:
    return part.lower() == ".git"


# --- out: copy without following links ------------------------------------------------------
def copy_fd(src_fd: int, dst: Path) -> None:
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out, os.fdopen(os.dup(src_fd), "rb") as inp:
        shutil.copyfileobj(inp, out, _CHUNK)


def _is_plain_dir(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def copy_tree(src: Path, dst: Path, *, skip_git: bool = True, skip: Callable[[str], bool] | None = None,
              copy: Callable[[int, str, int, Path], None] | None = None) -> list[str]:
    """Copy plain files and directories of `src` into `dst`; returns what was left out (relative paths).

    `copy(dir_fd, name, file_fd, dst_file)` may replace the byte copy of a
    verified regular file (the sqlite online copy). `skip(name)` drops files.
    """
    left: list[str] = []
    if not os.path.isdir(src) or os.path.islink(src):
        if os.path.lexists(src):
            left.append(".")
        return left
    dst.mkdir(parents=True, exist_ok=True)
    for dirpath, dirnames, filenames, dirfd in os.fwalk(src, follow_symlinks=False):
        rel = Path(dirpath).relative_to(src)
        for d in list(dirnames):
            if skip_git and is_git_name(d):  # the repo travels as a bundle, never as files
                dirnames.remove(d)
            elif not _is_plain_dir(d, dirfd):
                dirnames.remove(d)  # a symlink to a directory: fwalk lists it but must not enter it
                left.append(str(rel / d))
        for d in dirnames:
            (dst / rel / d).mkdir(exist_ok=True)
        for name in filenames:
            if (skip_git and is_git_name(name)) or (skip is not None and skip(name)):
                continue
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dirfd)
            except OSError:  # a symlink (ELOOP), or gone
                left.append(str(rel / name))
                continue
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    left.append(str(rel / name))
                    continue
                if copy is not None:
                    copy(dirfd, name, fd, dst / rel / name)
                else:
                    copy_fd(fd, dst / rel / name)
            finally:
                os.close(fd)
    return left


# --- in: checked extraction -----------------------------------------------------------------
def refuse(message: str) -> HiveError:
    return HiveError("bad_request", f"archive refused: {message}")


def _kind(m: tarfile.TarInfo) -> str:
    if m.issym():
        return "a symlink"
    if m.islnk():
        return "a hardlink"
    if m.ischr() or m.isblk():
        return "a device"
    if m.isfifo():
        return "a fifo"
    return f"an unsupported member type {m.type!r}"


def check_name(name: str, allowed_top: Iterable[str]) -> PurePosixPath:
    if not name or "\x00" in name:
        raise refuse(f"member {name!r} has an empty name")
    if name.startswith("/"):
        raise refuse(f"member {name!r} has an absolute path")
    p = PurePosixPath(name)
    if any(part == ".." for part in p.parts) or ".." in name.split("/"):
        raise refuse(f"member {name!r} contains '..'")
    if any(is_git_name(part) for part in p.parts):
        raise refuse(f"member {name!r} is inside a raw .git directory (archives carry git bundles; "
                     "archives before hive-agent-export/2 are not accepted: export the agent again)")
    if not p.parts or p.parts[0] not in set(allowed_top):
        raise refuse(f"member {name!r} is outside {sorted(set(allowed_top))}")
    return p


def _open_parent(root_fd: int, parts: tuple[str, ...]) -> int:
    """The fd of the directory holding parts[-1], creating parents; never follows a symlink."""
    fd = os.dup(root_fd)
    for part in parts[:-1]:
        try:
            os.mkdir(part, 0o700, dir_fd=fd)
        except FileExistsError:
            pass
        try:
            nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            os.close(fd)
            raise refuse(f"{'/'.join(parts)}: parent {part!r} is not a plain directory ({exc.strerror})") from None
        os.close(fd)
        fd = nfd
    return fd


def extract_checked(archive: Path, dest: Path, allowed_top: Iterable[str], *, max_bytes: int,
                    max_members: int) -> list[str]:
    """Extract `archive` (.tar.gz) into the empty directory `dest`; returns the member names."""
    allowed = set(allowed_top)
    dest.mkdir(mode=0o700)
    root = dest.resolve()
    names: list[str] = []
    seen: set[PurePosixPath] = set()
    total = 0
    root_fd = os.open(dest, _DIR_FLAGS)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for m in tar:
                if len(names) >= max_members:
                    raise refuse(f"more than {max_members} members")
                if not (m.isreg() or m.isdir()):
                    raise refuse(f"member {m.name!r} is {_kind(m)}; only plain files and directories are allowed")
                p = check_name(m.name, allowed)
                if p in seen:
                    raise refuse(f"member {m.name!r} appears twice")
                seen.add(p)
                total += m.size
                if total > max_bytes:
                    raise refuse(f"more than {max_bytes} bytes of content")
                target = root.joinpath(*p.parts)
                if not target.is_relative_to(root):  # cannot happen after check_name; checked anyway
                    raise refuse(f"member {m.name!r} resolves outside the destination")
                names.append(str(p))
                parent = _open_parent(root_fd, p.parts)
                try:
                    if m.isdir():
                        try:
                            os.mkdir(p.parts[-1], 0o700, dir_fd=parent)
                        except FileExistsError:
                            if not stat.S_ISDIR(os.stat(p.parts[-1], dir_fd=parent, follow_symlinks=False).st_mode):
                                raise refuse(f"member {m.name!r} is a directory over a file") from None
                        continue
                    _write_member(tar, m, parent, p.parts[-1])
                finally:
                    os.close(parent)
    except (tarfile.TarError, EOFError, OSError, UnicodeError) as exc:
        raise refuse(f"unreadable archive: {exc}") from None
    finally:
        os.close(root_fd)
    return names


def _write_member(tar: tarfile.TarFile, m: tarfile.TarInfo, dir_fd: int, name: str) -> None:
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
    except FileExistsError:
        raise refuse(f"member {m.name!r} would overwrite something") from None
    src = tar.extractfile(m)
    if src is None:
        os.close(fd)
        raise refuse(f"member {m.name!r} has no content")
    with os.fdopen(fd, "wb") as out:
        left = m.size
        while left > 0:
            chunk = src.read(min(_CHUNK, left))
            if not chunk:
                raise refuse(f"member {m.name!r} is truncated")
            out.write(chunk)
            left -= len(chunk)
        os.fchmod(out.fileno(), (m.mode & 0o755) | 0o600)
        os.utime(out.fileno(), (m.mtime, m.mtime))
