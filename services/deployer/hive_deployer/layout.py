"""Where the deployer keeps things under HIVE_HOME.

Every path that contains an agent name is built here, and only after the
name has been validated, so `..`, `/`, upper case or a trailing newline can
never reach the filesystem.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from hivewire.errors import HiveError
from hivewire.names import MANAGER, validate_agent_name

SESSION_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MIGRATION_MARKER = ".deployer-migration-done"


def check_name(name: object, *, new: bool = False) -> str:
    """A valid agent name; `new` names may not be reserved words (manager is allowed)."""
    if new and name == MANAGER:
        return MANAGER
    return validate_agent_name(name, allow_reserved=not new)


def check_session_id(sid: object) -> str:
    if not isinstance(sid, str) or SESSION_ID_RE.fullmatch(sid) is None:
        raise HiveError("bad_request", f"invalid session id {sid!r}: must be a lowercase uuid")
    return sid


@dataclass(frozen=True)
class Layout:
    home: Path

    @property
    def db_path(self) -> Path:
        return self.home / "deployer.sqlite"

    @property
    def agents_root(self) -> Path:
        return self.home / "agents"

    @property
    def applied_root(self) -> Path:
        return self.home / "applied"

    @property
    def meta(self) -> Path:
        return self.home / "meta"

    @property
    def sessions_root(self) -> Path:
        return self.home / "sessions"

    @property
    def session_outputs_root(self) -> Path:
        return self.home / "session-output"

    @property
    def marker(self) -> Path:
        return self.home / MIGRATION_MARKER

    @property
    def logs(self) -> Path:
        return self.home / "run" / "logs" / "agents"

    @property
    def deploy_lock(self) -> Path:
        return self.home / "run" / "deploy.lock"

    def agent_dir(self, name: str) -> Path:
        return self.agents_root / check_name(name)

    def config(self, name: str) -> Path:
        return self.agent_dir(name) / "config"

    def state(self, name: str) -> Path:
        return self.agent_dir(name) / "state"

    def creds(self, name: str) -> Path:
        return self.agent_dir(name) / "creds"

    def applied(self, name: str) -> Path:
        return self.applied_root / check_name(name)

    def events_db(self, name: str) -> Path:
        return self.state(name) / "events.sqlite"

    def agent_log(self, name: str) -> Path:
        return self.logs / f"{check_name(name)}.log"

    def session_dir(self, sid: str) -> Path:
        return self.sessions_root / check_session_id(sid)

    def session_output(self, sid: str) -> Path:
        return self.session_outputs_root / check_session_id(sid)

    def session_log(self, sid: str) -> Path:
        return self.session_dir(sid) / "session.log"

    def make_agent_dirs(self, name: str) -> None:
        for d in (self.config(name), self.state(name)):
            d.mkdir(parents=True, exist_ok=True)
        self.creds(name).mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.creds(name), 0o700)

    def existing_agent_names(self) -> list[str]:
        """Agent dirs on disk whose names are valid (anything else is ignored)."""
        if not self.agents_root.is_dir():
            return []
        from hivewire.names import is_agent_name

        return sorted(p.name for p in self.agents_root.iterdir() if p.is_dir() and is_agent_name(p.name))


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def has_files(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def wipe(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
