"""JSON codec for the wire structs; decode failures become `bad_request`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from hivewire.errors import HiveError
from hivewire.wire.common import ErrorBody, ErrorReply

T = TypeVar("T")

ERROR_HEADER = "Nats-Service-Error"
ERROR_CODE_HEADER = "Nats-Service-Error-Code"
HIVE_CODE_HEADER = "Hive-Error"

_encoder = msgspec.json.Encoder()
# The Encoder's own method, without a Python frame around it: a broker send encodes a
# reply, a wake and a change.
encode: Callable[[Any], bytes] = _encoder.encode


_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def decode(data: bytes, type_: type[T]) -> T:
    """Decode a request; an empty payload means `{}`."""
    dec = _decoders.get(type_)
    if dec is None:  # one Decoder per type: msgspec.json.decode(type=) rebuilds its setup per call
        dec = _decoders[type_] = msgspec.json.Decoder(type_)
    try:
        return dec.decode(data or b"{}")  # type: ignore[no-any-return]
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise HiveError("bad_request", f"malformed request: {exc}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise HiveError("bad_request", f"malformed request: {exc}") from None


def error_payload(err: HiveError) -> tuple[bytes, dict[str, str]]:
    body = encode(ErrorReply(error=ErrorBody(code=err.code, message=err.message)))
    headers = {ERROR_HEADER: err.message[:200], ERROR_CODE_HEADER: err.status, HIVE_CODE_HEADER: err.code}
    return body, headers


def parse_reply(data: bytes, headers: dict[str, str] | None, type_: type[T]) -> T:
    """Decode a reply, raising `HiveError` when it is an error envelope."""
    if headers and (ERROR_CODE_HEADER in headers or HIVE_CODE_HEADER in headers):
        code = headers.get(HIVE_CODE_HEADER, "internal")
        message = headers.get(ERROR_HEADER, "")
        try:
            env = msgspec.json.decode(data, type=ErrorReply)
            code, message = env.error.code, env.error.message
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
        raise HiveError(code, message)
    if data.startswith(b'{"error":'):
        try:
            env = msgspec.json.decode(data, type=ErrorReply)
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
        else:
            raise HiveError(env.error.code, env.error.message)
    try:
        return msgspec.json.decode(data, type=type_)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise HiveError("internal", f"unreadable reply: {exc}") from None
