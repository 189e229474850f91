"""Moving a stopped agent's files between hosts (`hive agents move`, issue 26).

What moves: the agent's `state/` (events.sqlite, turn-stats.sqlite, the CLI's
session files, whatever the agent wrote) and `creds/` (its login) from the
host that ran it to another. Its config repo, `applied/` and meta never move:
they live on the core host whatever host runs the agent.

Both ends run these functions on their own `HIVE_HOME` (the deployer for the
core host, `hive-agenthost` for an agent host); the deployer carries the bytes
between them over NATS in chunks (`hive.host.<h>.pack|read|write|commit|drop`),
so nothing needs a shared disk or a direct link between agent hosts.

- `pack`: a copy of state/ and creds/ as `export` makes it (plain files and
  dirs only, never following a link; sqlite files through the backup API,
  -wal/-shm left out), tarred into `run/moves/<transfer>.tar.gz`; returns its
  size and sha256 and the *tree* digest (sha256 over every file's path, size
  and sha256).
- `write` appends chunks to `run/moves/<transfer>.in` (in order only).
- `commit` checks size and sha256 of what arrived, extracts it with the checked
  extraction of imports (`safefs.extract_checked`) into a scratch dir,
  recomputes the tree digest, and only when all three match replaces the
  agent's state/ and creds/ on this host (any earlier copy is removed).
- `drop` deletes a transfer's files; with `files`, the agent's own files on
  this host: the source's copy, once the target has confirmed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

from hive_deployer import safefs
from hive_deployer.archive import _copy_state_file, _skip_state
from hive_deployer.layout import Layout, check_name, wipe
from hivewire.errors import HiveError
from hivewire.wire.hosts import CommitReply, PackReply

CHUNK = 256 * 1024  # bytes per NATS message (base64 in JSON: ~350 kB, under the 1 MB default max payload)
TRANSFER_RE = re.compile(r"^[0-9a-f]{32}$")
TOP = ("state", "creds")


def moves_dir(layout: Layout) -> Path:
    d = layout.home / "run" / "moves"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def _tid(transfer: str) -> str:
    if not TRANSFER_RE.fullmatch(transfer):
        raise HiveError("bad_request", "transfer id must be 32 hex characters")
    return transfer


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_digest(root: Path) -> tuple[str, int]:
    """sha256 over `path NUL size NUL sha256` of every regular file under `root` (sorted), and their count."""
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            p = Path(dirpath) / name
            if p.is_symlink() or not p.is_file():
                continue
            rel = p.relative_to(root).as_posix()
            lines.append(f"{rel}\0{p.stat().st_size}\0{file_sha256(p)}\n")
    lines.sort()
    return hashlib.sha256("".join(lines).encode()).hexdigest(), len(lines)


def pack(layout: Layout, name: str, transfer: str) -> PackReply:
    name, transfer = check_name(name), _tid(transfer)
    if not layout.state(name).is_dir():
        raise HiveError("not_found", f"{name} has no state dir on this host")
    out = moves_dir(layout) / f"{transfer}.tar.gz"
    with tempfile.TemporaryDirectory(prefix="hive-move-", dir=moves_dir(layout)) as tmp:
        t = Path(tmp)
        safefs.copy_tree(layout.state(name), t / "state", skip=_skip_state, copy=_copy_state_file)
        safefs.copy_tree(layout.creds(name), t / "creds")
        tree, files = tree_digest(t)
        part = out.with_name(out.name + ".part")
        with tarfile.open(part, "w:gz") as tar:
            for item in TOP:
                if (t / item).exists():
                    tar.add(t / item, arcname=item)
        os.replace(part, out)
    return PackReply(agent=name, transfer=transfer, size=out.stat().st_size, sha256=file_sha256(out), tree=tree,
                     files=files)


def pack_session(layout: Layout, sid: str, transfer: str) -> PackReply:
    """A session's output dir (on the agent host that ran it) as `output/` in a transfer archive."""
    transfer = _tid(transfer)
    src = layout.session_output(sid)
    if not src.is_dir():
        raise HiveError("not_found", f"session {sid} has no output dir on this host")
    out = moves_dir(layout) / f"{transfer}.tar.gz"
    with tempfile.TemporaryDirectory(prefix="hive-session-", dir=moves_dir(layout)) as tmp:
        t = Path(tmp)
        safefs.copy_tree(src, t / "output")
        tree, files = tree_digest(t)
        part = out.with_name(out.name + ".part")
        with tarfile.open(part, "w:gz") as tar:
            tar.add(t / "output", arcname="output")
        os.replace(part, out)
    return PackReply(agent="", transfer=transfer, size=out.stat().st_size, sha256=file_sha256(out), tree=tree,
                     files=files)


def unpack_session(layout: Layout, sid: str, archive: Path, p: PackReply) -> int:
    """Install a session's fetched outputs into this host's output dir once size, sha256 and tree match."""
    if archive.stat().st_size != p.size or file_sha256(archive) != p.sha256:
        raise HiveError("conflict", "the fetched outputs differ from what the agent host packed")
    scratch = Path(tempfile.mkdtemp(prefix="hive-session-in-", dir=moves_dir(layout)))
    try:
        max_bytes, max_members = safefs.limits()
        safefs.extract_checked(archive, scratch / "x", ("output",), max_bytes=max_bytes, max_members=max_members)
        (scratch / "x" / "output").mkdir(parents=True, exist_ok=True)
        if tree_digest(scratch / "x")[0] != p.tree:
            raise HiveError("conflict", "the unpacked outputs differ from the agent host's tree")
        dst = layout.session_output(sid)
        wipe(dst)
        os.replace(scratch / "x" / "output", dst)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return p.files


def read(layout: Layout, transfer: str, offset: int, length: int) -> bytes:
    path = moves_dir(layout) / f"{_tid(transfer)}.tar.gz"
    if not path.exists():
        raise HiveError("not_found", "no such transfer here")
    with open(path, "rb") as f:
        f.seek(max(0, offset))
        return f.read(max(0, min(length, CHUNK)))


def write(layout: Layout, transfer: str, offset: int, data: bytes) -> None:
    path = moves_dir(layout) / f"{_tid(transfer)}.in"
    if offset == 0:
        path.unlink(missing_ok=True)
    have = path.stat().st_size if path.exists() else 0
    if offset != have:
        raise HiveError("conflict", f"chunk at {offset}, expected {have} (chunks go in order)")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "ab") as f:
        f.write(data)


def commit(layout: Layout, name: str, transfer: str, size: int, sha256: str, tree: str) -> CommitReply:
    name, transfer = check_name(name), _tid(transfer)
    got = moves_dir(layout) / f"{transfer}.in"
    if not got.exists() or got.stat().st_size != size:
        raise HiveError("conflict", f"received {got.stat().st_size if got.exists() else 0} of {size} bytes")
    if file_sha256(got) != sha256:
        raise HiveError("conflict", "the received archive's sha256 differs from the source's: not installed")
    scratch = Path(tempfile.mkdtemp(prefix="hive-move-in-", dir=moves_dir(layout)))
    try:
        root = scratch / "x"
        max_bytes, max_members = safefs.limits()
        safefs.extract_checked(got, root, TOP, max_bytes=max_bytes, max_members=max_members)
        mine, files = tree_digest(root)
        if mine != tree:
            raise HiveError("conflict", "the unpacked files differ from the source's tree: not installed")
        adir = layout.agent_dir(name)
        adir.mkdir(parents=True, exist_ok=True)
        for sub in TOP:
            dst = adir / sub
            if os.path.lexists(dst):  # an earlier copy (the agent ran here before): the moved one wins
                old = scratch / f"old-{sub}"
                os.replace(dst, old)
            if (root / sub).is_dir():
                os.replace(root / sub, dst)
        layout.state(name).mkdir(exist_ok=True)
        layout.creds(name).mkdir(mode=0o700, exist_ok=True)
        os.chmod(layout.creds(name), 0o700)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    got.unlink(missing_ok=True)
    return CommitReply(agent=name, tree=tree, files=files)


def drop_transfer(layout: Layout, transfer: str) -> None:
    for suffix in (".tar.gz", ".tar.gz.part", ".in"):
        (moves_dir(layout) / f"{_tid(transfer)}{suffix}").unlink(missing_ok=True)


def drop(layout: Layout, name: str, transfer: str, files: bool) -> None:
    name = check_name(name)
    drop_transfer(layout, transfer)
    if files:
        for sub in TOP:
            wipe(layout.agent_dir(name) / sub)
