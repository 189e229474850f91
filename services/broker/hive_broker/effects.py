"""What a committed transaction must announce, collected while it runs.

Domain functions run inside a write job and only *record* wakes, changes and
metric bumps here; the service publishes them after the commit returned, so
nothing is ever announced that a crash could still undo.
"""

from __future__ import annotations

import math

from hivewire.errors import HiveError

MAX_BODY_BYTES = 64 * 1024
MAX_ID_LEN = 128
MAX_TEXT_LEN = 4096


class Effects:
    """One per write job (a batch of sends shares one): a plain slotted class, cheap to build."""

    __slots__ = ("changes", "counters", "pollers", "put_back", "wakes")

    def __init__(self) -> None:
        self.wakes: list[tuple[str, str, str]] = []  # (agent, reason, ref)
        self.changes: list[tuple[str, str, str]] = []  # (table, id, op)
        self.pollers: set[str] = set()  # agents whose waiting recv should look again
        self.put_back: set[str] = set()  # agents whose in-flight messages are pending again
        self.counters: dict[str, int] = {}

    def wake(self, agent: str, reason: str, ref: str) -> None:
        self.wakes.append((agent, reason, ref))

    def change(self, table: str, id_: object, op: str) -> None:
        self.changes.append((table, str(id_), op))

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n


def check_body(body: str, what: str = "body") -> str:
    if not body.strip():
        raise HiveError("bad_request", f"empty {what}")
    size = len(body.encode("utf-8", "surrogatepass"))
    if size > MAX_BODY_BYTES:
        raise HiveError(
            "too_large", f"{what} is {size} bytes, limit {MAX_BODY_BYTES}: send a file path for big content"
        )
    return body


def check_text(value: str, what: str, limit: int = MAX_TEXT_LEN, *, allow_empty: bool = False) -> str:
    if not allow_empty and not value.strip():
        raise HiveError("bad_request", f"empty {what}")
    if len(value) > limit:
        raise HiveError("too_large", f"{what} longer than {limit} characters")
    return value


def check_id(value: str, what: str) -> int:
    """A row id as it crosses the wire: a decimal string."""
    if not (0 < len(value) <= 20 and value.isascii() and value.isdigit()):
        raise HiveError("bad_request", f"{what} {value[:40]!r} is not a valid id")
    return int(value)


def check_client_id(value: str) -> str:
    if not (0 < len(value) <= MAX_ID_LEN) or not value.isprintable():
        raise HiveError("bad_request", f"client id must be 1-{MAX_ID_LEN} printable characters")
    return value


def check_time(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise HiveError("bad_request", f"{what} must be a finite number")
    return value
