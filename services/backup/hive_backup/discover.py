"""What to back up, found from the HIVE_HOME layout (docs/backup.md).

- databases: `broker.sqlite`, any other `*.sqlite` at the top (the deployer's
  state), `agents/*/state/*.sqlite`, every file registered under the
  `hive.databases` entry point group, plus `[include] databases` globs.
- repos: `agents/*/config`, `applied/*`, `meta` (git work trees or bare repos).
- secrets: `agents/*/creds/**`, `secrets/**` (the fleet's login token),
  `operator.token`, NATS creds (`*.creds`, `run/*.creds`, `nats/**`), plus
  `[include] secrets` globs.
- bulky: directories from `[include] bulky` (default `sessions`,
  `agents/*/state`), without sqlite files and secrets.

Nothing is ever reached through a symlink, and only regular files are read:
agents write their own dirs, so a symlink there (to `nats/creds`, to
`/etc/shadow`, to a dir), a FIFO, socket or device is recorded as nothing:
skipped, counted and logged (`confine.Skips`). See `confine`.

`backups/` (the local target) and `backup/` (our config and keys) are never
included, nor derived files, which their owner rebuilds from what is backed up
(`broker-search.sqlite`, the broker's full-text index of broker.sqlite).
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import structlog

from hive_backup import confine
from hive_backup.config import Config

log = structlog.get_logger("hive_backup.discover")

NEVER = ("backups", "backup")
DERIVED = ("broker-search.sqlite",)  # rebuilt from broker.sqlite by the broker
SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
SIDE_FILES = ("-wal", "-shm", "-journal")
SQLITE_MAGIC = b"SQLite format 3\x00"
SECRET_GLOBS = ("agents/*/creds/**/*", "remote/*/agents/*/creds/**/*",
                "secrets/**/*", "operator.token", "*.creds", "run/*.creds", "nats/**/*")


@dataclass(frozen=True)
class Item:
    cls: str  # databases | secrets | repos | bulky
    kind: str  # sqlite | git | secrets | tree
    source: str  # relative to HIVE_HOME (posix)
    path: Path


def _rel(home: Path, p: Path) -> str:
    return p.relative_to(home).as_posix()


def _excluded(rel: str, cfg: Config) -> bool:
    top = rel.split("/", 1)[0]
    return top in NEVER or rel in DERIVED or any(fnmatch.fnmatch(rel, pat) for pat in cfg.exclude)


def _glob(home: Path, pattern: str, skips: confine.Skips) -> list[Path]:
    try:
        return confine.glob(home, pattern, skips)
    except confine.UnsafePath as exc:
        log.warning("backup_glob_rejected", pattern=pattern, error=str(exc))
        return []


def is_sqlite(home: Path, rel: str) -> bool:
    """Starts with the SQLite header (read through `confine.open_file`: no symlink, no FIFO)."""
    try:
        return confine.read_head(home, rel, 16) == SQLITE_MAGIC
    except (OSError, confine.UnsafePath):
        return False


def _kind(home: Path, rel: str, skips: confine.Skips) -> str | None:
    """"file" or "dir" when home/rel is one with no symlink on the way; else None (recorded in `skips`)."""
    try:
        st = confine.lstat_under(home, rel)
    except confine.UnsafePath:
        skips.add(rel, "symlink")
        return None
    except OSError:
        return None
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    skips.add(rel, "symlink" if stat.S_ISLNK(st.st_mode) else "special")
    return None


def _registered_dbs(home: Path) -> list[Path]:
    try:
        from hivewire.migrations import discover_databases
        from hivewire.settings import Settings

        return [Path(str(spec.path)) for spec in discover_databases(Settings(home=home))]
    except Exception as exc:  # a broken plugin must not stop backups
        log.error("backup_registered_dbs_failed", error=str(exc))
        return []


def databases(home: Path, cfg: Config, skips: confine.Skips | None = None) -> list[Item]:
    skips = skips if skips is not None else confine.Skips()
    cands: list[Path] = [home / "broker.sqlite"]
    cands += [home / n for n in sorted(os.listdir(home)) if Path(n).suffix in SQLITE_SUFFIXES] if home.is_dir() else []
    cands += _glob(home, "agents/*/state/*.sqlite", skips)
    cands += _glob(home, "remote/*/agents/*/state/*.sqlite", skips)  # agents on other hosts (hive_backup.remote)
    cands += _registered_dbs(home)
    for pat in cfg.include.databases:
        cands += _glob(home, pat, skips)
    out: dict[str, Item] = {}
    for p in cands:
        p = p.absolute()
        try:
            rel = _rel(home, p)
        except ValueError:
            log.warning("backup_db_outside_home", path=str(p))
            continue
        if rel in out or p.name.endswith(SIDE_FILES) or _excluded(rel, cfg):
            continue
        if _kind(home, rel, skips) != "file" or not is_sqlite(home, rel):
            continue
        out[rel] = Item("databases", "sqlite", rel, p)
    return list(out.values())


def _is_repo(home: Path, rel: str, skips: confine.Skips) -> bool:
    if _kind(home, rel, skips) != "dir":
        return False
    try:  # `.git` must be the repo's own dir (a symlink or gitfile could point at another repo)
        st = confine.lstat_under(home, f"{rel}/.git")
        return stat.S_ISDIR(st.st_mode)
    except FileNotFoundError:
        pass
    except (OSError, confine.UnsafePath):
        return False
    return _kind(home, f"{rel}/HEAD", skips) == "file" and _kind(home, f"{rel}/objects", skips) == "dir"


def repos(home: Path, cfg: Config, skips: confine.Skips | None = None) -> list[Item]:
    skips = skips if skips is not None else confine.Skips()
    cands = _glob(home, "agents/*/config", skips) + _glob(home, "applied/*", skips) + [home / "meta"]
    for pat in cfg.include.repos:
        cands += _glob(home, pat, skips)
    seen: set[str] = set()
    out = []
    for p in cands:
        rel = _rel(home, p)
        if rel in seen or _excluded(rel, cfg) or not _is_repo(home, rel, skips):
            continue
        seen.add(rel)
        out.append(Item("repos", "git", rel, p))
    return out


def secret_files(home: Path, cfg: Config, skips: confine.Skips | None = None) -> list[str]:
    """Secret files (relative to home): regular files only, never reached through a symlink."""
    skips = skips if skips is not None else confine.Skips()
    found: dict[str, None] = {}
    for pat in (*SECRET_GLOBS, *cfg.include.secrets):
        for p in _glob(home, pat, skips):
            rel = _rel(home, p)
            kind = _kind(home, rel, skips)
            if kind == "file" and not _excluded(rel, cfg):
                found[rel] = None
            elif kind == "dir":
                for q in confine.walk_files(home, rel, skips):
                    if not _excluded(q, cfg):
                        found[q] = None
    return list(found)


def secrets(home: Path, cfg: Config, skips: confine.Skips | None = None) -> list[Item]:
    files = secret_files(home, cfg, skips)
    return [Item("secrets", "secrets", "secrets", home)] if files else []


def bulky(home: Path, cfg: Config, skips: confine.Skips | None = None) -> list[Item]:
    skips = skips if skips is not None else confine.Skips()
    out = []
    for pat in cfg.include.bulky:
        for p in _glob(home, pat, skips):
            rel = _rel(home, p)
            if not _excluded(rel, cfg) and _kind(home, rel, skips) == "dir":
                out.append(Item("bulky", "tree", rel, p))
    return out


def tree_members(home: Path, rel_root: str, cfg: Config, secret: set[str], skips: confine.Skips) -> list[str]:
    """Files of a bulky dir (relative to home): no sqlite files (taken online instead), no secrets."""
    out = []
    for rel in confine.walk_files(home, rel_root, skips):
        name = rel.rsplit("/", 1)[-1]
        if rel in secret or name.endswith(SIDE_FILES) or Path(name).suffix in SQLITE_SUFFIXES:
            continue
        if "creds" in rel.split("/") or _excluded(rel, cfg) or is_sqlite(home, rel):
            continue
        out.append(rel)
    return out


def discover(home: Path, cfg: Config, classes: list[str], skips: confine.Skips | None = None) -> list[Item]:
    skips = skips if skips is not None else confine.Skips()
    finders = {"databases": databases, "secrets": secrets, "repos": repos, "bulky": bulky}
    items: list[Item] = []
    for cls in classes:
        items += finders[cls](home, cfg, skips)
    return items
