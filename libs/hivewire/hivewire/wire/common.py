"""Base struct and the error envelope shared by every payload."""

from __future__ import annotations

import msgspec


class Wire(msgspec.Struct, kw_only=True):
    """Base of every payload: keyword-only, tolerant of unknown fields.

    Unknown fields are ignored (not rejected) so a newer client can talk to an
    older service; type errors are still rejected by the decoder.
    """


class Empty(Wire, kw_only=True):
    """A request or reply with no fields (`{}`)."""


class Ok(Wire, kw_only=True):
    ok: bool = True


class ErrorBody(Wire, kw_only=True):
    code: str
    message: str


class ErrorReply(Wire, kw_only=True):
    error: ErrorBody
