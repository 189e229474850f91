"""Export and import of one agent as a single archive (docs/deployer.md, "Agent archives").

An archive (`hive-agent-export/2`, a .tar.gz) holds, in this order:
`manifest.json`; `repos/config.bundle` and `repos/applied.bundle` (each repo
as a `git bundle` of all its refs, HEAD named in the manifest); `config/`
(the config work tree as plain files, uncommitted edits included, no `.git`);
`state/` (sqlite files copied online with the sqlite backup API, so a running
agent need not stop; -wal/-shm/-journal are not copied) and, only when asked,
`creds/`. Export never follows a symlink: links, fifos, sockets and devices
in the agent's dirs are left out (listed under `skipped` in the manifest), and
the config repo is bundled without git opening it (`safegit.bundle_create`).

Import validates every member while extracting into a temp dir under
HIVE_HOME (`safefs.extract_checked`: plain files and dirs only, no absolute
path, `..`, `.git`, duplicate, link or device, size and count limits), then
builds each repo from its bundle with hardened git (`git init` + fetch of all
refs, objects fsck'd) and only then moves it into place; a refusal
(bad_request, with the reason) leaves nothing behind. Archives with raw
`.git` directories (`hive-agent-export/1`) are refused: git never runs on
them.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from hive_deployer import git, safefs
from hive_deployer.layout import Layout, check_name, wipe
from hivewire import safegit
from hivewire.errors import HiveError

log = structlog.get_logger("hive_deployer.archive")
FORMAT = "hive-agent-export/2"
OLD_FORMATS = ("hive-agent-export/1",)
SQLITE_MAGIC = b"SQLite format 3\x00"
TOP = ("manifest.json", "repos", "config", "state", "creds")
REPOS = ("config", "applied")
MANIFEST_MAX = 16 * 1024 * 1024


def copy_sqlite_online(src: Path, dst: Path) -> None:
    s = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=5)
    d = sqlite3.connect(dst)
    try:
        s.backup(d)
    finally:
        d.close()
        s.close()


def _copy_state_file(dir_fd: int, name: str, fd: int, dst: Path) -> None:
    """A verified regular file of state/: sqlite files through the backup API, the rest byte for byte."""
    os.lseek(fd, 0, os.SEEK_SET)
    if os.read(fd, 16) != SQLITE_MAGIC:
        os.lseek(fd, 0, os.SEEK_SET)
        safefs.copy_fd(fd, dst)
        return
    before = os.fstat(fd)
    # the directory is pinned by its fd: no symlinked parent can be swapped in under us
    copy_sqlite_online(Path(f"/proc/self/fd/{dir_fd}/{name}"), dst)
    after = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        dst.unlink(missing_ok=True)
        raise HiveError("conflict", f"state file {name} was replaced during the export; try again")


def _skip_state(name: str) -> bool:
    return name.endswith(("-wal", "-shm", "-journal"))


def export_agent(layout: Layout, name: str, row: dict[str, Any], dest: Path, include_creds: bool = False,
                 files: Path | None = None) -> int:
    """`files`: a dir with the agent's `state/` and `creds/` fetched from the agent host that runs it
    (they are not in this host's layout); its config and applied repos are always this host's."""
    name = check_name(name)
    if not layout.agent_dir(name).is_dir():
        raise HiveError("not_found", f"agent {name} has no state dir")
    state, creds = (files / "state", files / "creds") if files else (layout.state(name), layout.creds(name))
    dest = Path(dest)
    if not dest.is_absolute():
        raise HiveError("bad_request", "export path must be absolute")
    with tempfile.TemporaryDirectory(prefix="hive-export-") as tmp:
        t = Path(tmp)
        (t / "repos").mkdir()
        heads: dict[str, str | None] = {}
        for sub, src in (("config", layout.config(name)), ("applied", layout.applied(name))):
            if os.path.lexists(src / ".git"):
                gd = safegit.agent_git_dir(src)
                if safegit.bundle_create(gd, t / "repos" / f"{sub}.bundle", parent=t):
                    heads[sub] = safegit.read_refs(gd)[1]
        skipped = {
            "config": safefs.copy_tree(layout.config(name), t / "config"),
            "state": safefs.copy_tree(state, t / "state", skip=_skip_state, copy=_copy_state_file),
            "creds": safefs.copy_tree(creds, t / "creds") if include_creds else [],
        }
        skipped = {k: v for k, v in skipped.items() if v}
        if skipped:
            log.warning("export_skipped", agent=name, skipped=skipped)
        manifest = {"format": FORMAT, "name": name, "exported_at": time.time(), "include_creds": include_creds,
                    "agent": row, "repos": heads, "skipped": skipped}
        (t / "manifest.json").write_text(json.dumps(manifest, indent=2))
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        with tarfile.open(part, "w:gz") as tar:
            for item in TOP:
                if (t / item).exists():
                    tar.add(t / item, arcname=item)
        os.chmod(part, 0o600)
        os.replace(part, dest)
    return dest.stat().st_size


def _check_manifest(root: Path) -> dict[str, Any]:
    f = root / "manifest.json"
    if not f.is_file() or f.stat().st_size > MANIFEST_MAX:
        raise safefs.refuse("no manifest.json (or a huge one)")
    try:
        manifest = json.loads(f.read_text())
    except (ValueError, UnicodeError) as exc:
        raise safefs.refuse(f"manifest.json is not JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise safefs.refuse("manifest.json is not an object")
    fmt = manifest.get("format")
    if fmt in OLD_FORMATS:
        raise safefs.refuse(f"{fmt} archives carry raw .git directories and are not accepted; export again")
    if fmt != FORMAT:
        raise safefs.refuse(f"not a {FORMAT} archive")
    if not isinstance(manifest.get("name"), str) or not isinstance(manifest.get("agent", {}), dict):
        raise safefs.refuse("manifest.json lacks a name")
    heads = manifest.get("repos") or {}
    if not isinstance(heads, dict):
        raise safefs.refuse("manifest.json repos is not an object")
    for sub, head in heads.items():
        ok = head is None or (isinstance(head, str) and (
            (head.startswith("ref: ") and safegit.REF_RE.match(head[5:]) is not None and ".." not in head)
            or safegit.SHA1_RE.match(head) is not None))
        if sub not in REPOS or not ok:
            raise safefs.refuse(f"manifest.json names a bad repo head {sub}={head!r}")
    return manifest


@dataclass
class Staged:
    """A validated archive, unpacked and with its repos built, in a temp dir under HIVE_HOME."""

    manifest: dict[str, Any]
    tmp: Path

    @property
    def root(self) -> Path:
        return self.tmp / "x"

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def stage(layout: Layout, path: Path, *, max_bytes: int | None = None, max_members: int | None = None) -> Staged:
    """Validate and unpack `path`; the caller installs or discards the result. Refusals raise bad_request."""
    lim_bytes, lim_members = safefs.limits()
    layout.home.mkdir(parents=True, exist_ok=True)
    st = Staged({}, Path(tempfile.mkdtemp(prefix=".hive-import-", dir=layout.home)))
    try:
        safefs.extract_checked(path, st.root, TOP, max_bytes=max_bytes or lim_bytes,
                               max_members=max_members or lim_members)
        st.manifest = _check_manifest(st.root)
        heads = st.manifest.get("repos") or {}
        for sub in REPOS:
            bundle = st.root / "repos" / f"{sub}.bundle"
            if not bundle.is_file():
                continue
            try:
                git.restore_bundle(bundle, st.root / sub, heads.get(sub), checkout=(sub == "applied"))
            except HiveError as exc:
                raise safefs.refuse(f"repos/{sub}.bundle is unusable: {exc.message}") from None
        return st
    except BaseException:
        st.discard()
        raise


def install(layout: Layout, st: Staged, name: str) -> None:
    """Move a staged archive into agents/<name> and applied/<name> (which must not exist)."""
    name = check_name(name, new=True)
    adir = layout.agent_dir(name)
    adir.mkdir(parents=True)
    for sub in ("config", "state", "creds"):
        if (st.root / sub).is_dir():
            os.replace(st.root / sub, adir / sub)
    if (st.root / "applied").is_dir():
        layout.applied_root.mkdir(parents=True, exist_ok=True)
        os.replace(st.root / "applied", layout.applied(name))
    layout.make_agent_dirs(name)


def remove_agent_files(layout: Layout, name: str) -> None:
    wipe(layout.agent_dir(name))
    wipe(layout.applied(name))
