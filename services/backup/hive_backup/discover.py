"""What to back up, found from the HIVE_HOME layout (DESIGN.md "Files on disk").

- databases: `broker.sqlite`, any other `*.sqlite` at the top (the deployer's
  state), `agents/*/state/*.sqlite`, every file registered under the
  `hive.databases` entry point group, plus `[include] databases` globs.
- repos: `agents/*/config`, `applied/*`, `meta` (git work trees or bare repos).
- secrets: `agents/*/creds/**`, `operator.token`, NATS creds (`*.creds`,
  `run/*.creds`, `nats/**`), plus `[include] secrets` globs.
- bulky: directories from `[include] bulky` (default `sessions`,
  `agents/*/state`), without sqlite files and secrets.

`backups/` (the local target) and `backup/` (our config and keys) are never
included, nor derived files, which their owner rebuilds from what is backed up
(`broker-search.sqlite`, the broker's full-text index of broker.sqlite).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import structlog

from hive_backup.config import Config

log = structlog.get_logger("hive_backup.discover")

NEVER = ("backups", "backup")
DERIVED = ("broker-search.sqlite",)  # rebuilt from broker.sqlite by the broker
SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
SIDE_FILES = ("-wal", "-shm", "-journal")
SECRET_GLOBS = ("agents/*/creds/**/*", "operator.token", "*.creds", "run/*.creds", "nats/**/*")


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


def _glob(home: Path, pattern: str) -> list[Path]:
    if pattern.startswith("/") or ".." in Path(pattern).parts:
        log.warning("backup_glob_rejected", pattern=pattern)
        return []
    return sorted(home.glob(pattern))


def is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _registered_dbs(home: Path) -> list[Path]:
    try:
        from hivewire.migrations import discover_databases
        from hivewire.settings import Settings

        return [Path(str(spec.path)) for spec in discover_databases(Settings(home=home))]
    except Exception as exc:  # a broken plugin must not stop backups
        log.error("backup_registered_dbs_failed", error=str(exc))
        return []


def databases(home: Path, cfg: Config) -> list[Item]:
    cands: list[Path] = [home / "broker.sqlite"]
    cands += [p for p in sorted(home.iterdir()) if p.suffix in SQLITE_SUFFIXES] if home.is_dir() else []
    cands += _glob(home, "agents/*/state/*.sqlite")
    cands += _registered_dbs(home)
    for pat in cfg.include.databases:
        cands += _glob(home, pat)
    out: dict[Path, Item] = {}
    for p in cands:
        p = p.absolute()
        if p in out or not p.is_file() or p.name.endswith(SIDE_FILES):
            continue
        try:
            rel = _rel(home, p)
        except ValueError:
            log.warning("backup_db_outside_home", path=str(p))
            continue
        if _excluded(rel, cfg) or not is_sqlite(p):
            continue
        out[p] = Item("databases", "sqlite", rel, p)
    return list(out.values())


def _is_repo(p: Path) -> bool:
    return (p / ".git").exists() or ((p / "HEAD").is_file() and (p / "objects").is_dir())


def repos(home: Path, cfg: Config) -> list[Item]:
    cands = _glob(home, "agents/*/config") + _glob(home, "applied/*") + [home / "meta"]
    for pat in cfg.include.repos:
        cands += _glob(home, pat)
    seen: set[Path] = set()
    out = []
    for p in cands:
        if p in seen or not p.is_dir() or not _is_repo(p):
            continue
        seen.add(p)
        rel = _rel(home, p)
        if not _excluded(rel, cfg):
            out.append(Item("repos", "git", rel, p))
    return out


def secret_files(home: Path, cfg: Config) -> list[Path]:
    found: dict[Path, None] = {}
    for pat in (*SECRET_GLOBS, *cfg.include.secrets):
        for p in _glob(home, pat):
            if p.is_file() and not p.is_symlink() and not _excluded(_rel(home, p), cfg):
                found[p] = None
            elif p.is_dir():
                for q in sorted(p.rglob("*")):
                    if q.is_file() and not q.is_symlink() and not _excluded(_rel(home, q), cfg):
                        found[q] = None
    return list(found)


def secrets(home: Path, cfg: Config) -> list[Item]:
    files = secret_files(home, cfg)
    return [Item("secrets", "secrets", "secrets", home)] if files else []


def bulky(home: Path, cfg: Config) -> list[Item]:
    out = []
    for pat in cfg.include.bulky:
        for p in _glob(home, pat):
            rel = _rel(home, p)
            if p.is_dir() and not _excluded(rel, cfg):
                out.append(Item("bulky", "tree", rel, p))
    return out


def tree_members(home: Path, root: Path, cfg: Config, secret: set[Path]) -> list[Path]:
    """Files of a bulky dir: no sqlite files (taken online instead), no secrets."""
    out = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.is_symlink() or p in secret:
            continue
        if p.name.endswith(SIDE_FILES) or p.suffix in SQLITE_SUFFIXES or is_sqlite(p):
            continue
        if "creds" in p.relative_to(home).parts or _excluded(_rel(home, p), cfg):
            continue
        out.append(p)
    return out


def discover(home: Path, cfg: Config, classes: list[str]) -> list[Item]:
    finders = {"databases": databases, "secrets": secrets, "repos": repos, "bulky": bulky}
    items: list[Item] = []
    for cls in classes:
        items += finders[cls](home, cfg)
    return items
