"""Agent names: validated before any subject or path is built from them."""

from __future__ import annotations

import re

from hivewire.errors import HiveError

AGENT_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
# AGENT_NAME_RE in words, for error messages people read (the dashboard's spawn form, the CLI)
NAME_RULE = "1 to 31 characters: a lowercase letter first, then lowercase letters, digits or '-'"
MANAGER = "manager"
OPERATOR = "operator"
BROADCAST = "*"
# Names that would collide with a recipient keyword or a subject family.
RESERVED = frozenset({OPERATOR, "all", "broker", "deployer", "backup", "session", "dashboard"})


_KNOWN_GOOD: set[str] = set()  # names that passed: a send checks several per request
_KNOWN_GOOD_MAX = 4096


def is_agent_name(name: object) -> bool:
    if not isinstance(name, str):
        return False
    if name in _KNOWN_GOOD:
        return True
    if AGENT_NAME_RE.fullmatch(name) is None:
        return False
    if len(_KNOWN_GOOD) >= _KNOWN_GOOD_MAX:  # bounded: a flood of random names cannot grow it
        _KNOWN_GOOD.clear()
    _KNOWN_GOOD.add(name)
    return True


def validate_agent_name(name: object, *, allow_reserved: bool = False) -> str:
    """Return `name` if it is a valid agent name, else raise `bad_name`.

    Uses fullmatch, so a trailing newline or `..`, `/` can never slip through.
    """
    if not is_agent_name(name):
        raise HiveError("bad_name", f"invalid agent name {name!r}: an agent name is {NAME_RULE}")
    assert isinstance(name, str)
    if not allow_reserved and name in RESERVED:
        raise HiveError("bad_name", f"{name!r} is reserved for Hive itself; pick another name "
                                    f"(reserved: {', '.join(sorted(RESERVED))})")
    return name
