"""The one error type that crosses the wire.

A service raises `HiveError(code, message)`; the micro layer turns it into
`{"error": {"code", "message"}}` plus the NATS micro error headers, and the
client helper turns that back into a `HiveError`.
"""

from __future__ import annotations

# code -> the status the NATS micro error header carries (HTTP-like, so
# `nats req` users read a familiar number).
ERROR_STATUS: dict[str, str] = {
    "bad_request": "400",
    "bad_name": "400",
    "too_large": "413",
    "unknown_recipient": "404",
    "not_found": "404",
    "forbidden": "403",
    "conflict": "409",
    "unavailable": "503",
    "timeout": "504",
    "internal": "500",
}


class HiveError(Exception):
    """A structured, user-facing error with a stable machine code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def status(self) -> str:
        return ERROR_STATUS.get(self.code, "500")

