"""Agent names: validated before any subject or path is built from them."""

from __future__ import annotations

import re

from hivewire.errors import HiveError

AGENT_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
MANAGER = "manager"
OPERATOR = "operator"
BROADCAST = "*"
# Names that would collide with a recipient keyword or a subject family.
RESERVED = frozenset({OPERATOR, "all", "broker", "deployer", "backup", "session", "dashboard"})


def is_agent_name(name: object) -> bool:
    return isinstance(name, str) and AGENT_NAME_RE.fullmatch(name) is not None


def validate_agent_name(name: object, *, allow_reserved: bool = False) -> str:
    """Return `name` if it is a valid agent name, else raise `bad_name`.

    Uses fullmatch, so a trailing newline or `..`, `/` can never slip through.
    """
    if not is_agent_name(name):
        raise HiveError("bad_name", f"invalid agent name {name!r}: must match {AGENT_NAME_RE.pattern}")
    assert isinstance(name, str)
    if not allow_reserved and name in RESERVED:
        raise HiveError("bad_name", f"{name!r} is reserved")
    return name
