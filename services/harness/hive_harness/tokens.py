"""Long-lived login tokens for unattended fleets (`claude setup-token`'s `CLAUDE_CODE_OAUTH_TOKEN`).

Set once by the operator with `hive login set-token [--agent NAME]` (read from
stdin or a prompt, never argv), stored 0600:

- `HIVE_HOME/secrets/oauth-token`: every agent's;
- `HIVE_HOME/agents/<name>/creds/oauth-token`: one agent's (wins over the fleet's).

The harness hands it to the inner CLI as `CLAUDE_CODE_OAUTH_TOKEN` (over one
inherited from its own environment). Backups carry both as secrets (encrypted).
"""

from __future__ import annotations

import os
from pathlib import Path

FILE = "oauth-token"
MAX_LEN = 4096


def fleet_path(home: Path) -> Path:
    return home / "secrets" / FILE


def agent_path(creds_dir: Path) -> Path:
    return creds_dir / FILE


def clean(token: str) -> str:
    """The token as given (whitespace trimmed); ValueError when it cannot be one."""
    t = token.strip()
    if not t:
        raise ValueError("empty token")
    if len(t) > MAX_LEN or any(c.isspace() or not c.isprintable() for c in t):
        raise ValueError("not a token: one line of printable characters without spaces expected")
    return t


def write(path: Path, token: str) -> None:
    """Store `token` at `path`, 0600 from the start (its dir 0700), replacing any old one."""
    t = clean(token)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, (t + "\n").encode())
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read(path: Path) -> str | None:
    """The token stored at `path`, or None (absent, unreadable, a symlink, or not a token)."""
    try:
        if path.is_symlink() or not path.is_file():
            return None
        return clean(path.read_text(errors="replace")[: MAX_LEN + 2])
    except (OSError, ValueError):
        return None


def token_for(creds_dir: Path, home: Path | None) -> str | None:
    """This agent's token: its own, else the fleet's."""
    return read(agent_path(creds_dir)) or (read(fleet_path(home)) if home is not None else None)
