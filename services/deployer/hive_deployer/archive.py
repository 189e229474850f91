"""Export and import of one agent as a single archive (seed 002).

`export` writes a .tar.gz with `manifest.json`, `config/` and `applied/`
(whole git repos), `state/` (sqlite files copied online with the sqlite
backup API, so a running agent need not stop; -wal/-shm are not copied) and,
only when asked, `creds/`. `import` unpacks it (safely: no absolute paths,
no `..`, no links or devices) under the same or a new name; an existing
agent of that name is a conflict unless `force`.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from hive_deployer import git
from hive_deployer.layout import Layout, check_name, wipe
from hivewire.errors import HiveError

FORMAT = "hive-agent-export/1"
SQLITE_MAGIC = b"SQLite format 3\x00"


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def copy_sqlite_online(src: Path, dst: Path) -> None:
    s = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=5)
    d = sqlite3.connect(dst)
    try:
        s.backup(d)
    finally:
        d.close()
        s.close()


def _copy_state(src: Path, dst: Path) -> None:
    for root, _dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for f in files:
            p = Path(root) / f
            if f.endswith(("-wal", "-shm", "-journal")) or p.is_symlink():
                continue
            if _is_sqlite(p):
                copy_sqlite_online(p, dst / rel / f)
            else:
                shutil.copy2(p, dst / rel / f)


def export_agent(layout: Layout, name: str, row: dict[str, Any], dest: Path, include_creds: bool = False) -> int:
    name = check_name(name)
    if not layout.agent_dir(name).is_dir():
        raise HiveError("not_found", f"agent {name} has no state dir")
    dest = Path(dest)
    if not dest.is_absolute():
        raise HiveError("bad_request", "export path must be absolute")
    with tempfile.TemporaryDirectory(prefix="hive-export-") as tmp:
        t = Path(tmp)
        manifest = {"format": FORMAT, "name": name, "exported_at": time.time(), "include_creds": include_creds,
                    "agent": row}
        (t / "manifest.json").write_text(json.dumps(manifest, indent=2))
        _copy_state(layout.state(name), t / "state")
        for sub, src in (("config", layout.config(name)), ("applied", layout.applied(name))):
            if src.is_dir():
                shutil.copytree(src, t / sub, symlinks=True)
        if include_creds and layout.creds(name).is_dir():
            shutil.copytree(layout.creds(name), t / "creds", symlinks=False)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        with tarfile.open(part, "w:gz") as tar:
            for item in sorted(t.iterdir()):
                tar.add(item, arcname=item.name)
        os.chmod(part, 0o600)
        os.replace(part, dest)
    return dest.stat().st_size


def read_manifest(path: Path) -> dict[str, Any]:
    with tarfile.open(path, "r:gz") as tar:
        m = tar.extractfile("manifest.json")
        if m is None:
            raise HiveError("bad_request", "archive has no manifest.json")
        manifest: dict[str, Any] = json.loads(m.read())
    if manifest.get("format") != FORMAT:
        raise HiveError("bad_request", f"not a {FORMAT} archive")
    return manifest


def unpack(layout: Layout, path: Path, name: str) -> dict[str, Any]:
    """Extract into agents/<name> and applied/<name> (which must not exist)."""
    name = check_name(name, new=True)
    manifest = read_manifest(path)
    with tempfile.TemporaryDirectory(prefix="hive-import-", dir=layout.home) as tmp:
        t = Path(tmp)
        with tarfile.open(path, "r:gz") as tar:
            for member in tar.getmembers():
                if member.name.startswith("/") or ".." in Path(member.name).parts or not (
                    member.isfile() or member.isdir()
                ):
                    raise HiveError("bad_request", f"unsafe archive member {member.name!r}")
            tar.extractall(t, filter="data")
        adir = layout.agent_dir(name)
        adir.mkdir(parents=True)
        for sub in ("config", "state", "creds"):
            if (t / sub).is_dir():
                shutil.move(str(t / sub), str(adir / sub))
        if (t / "applied").is_dir():
            layout.applied_root.mkdir(parents=True, exist_ok=True)
            shutil.move(str(t / "applied"), str(layout.applied(name)))
        layout.make_agent_dirs(name)
    applied = layout.applied(name)
    if git.is_repo(applied):
        # a moved repo keeps no absolute paths, but its work tree must match main
        git.git(applied, "reset", "-q", "--hard")
    return manifest


def remove_agent_files(layout: Layout, name: str) -> None:
    wipe(layout.agent_dir(name))
    wipe(layout.applied(name))
