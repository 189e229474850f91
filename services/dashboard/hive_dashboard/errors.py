"""Exception handlers: HiveError as JSON with a matching status, login redirects."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException
from litestar.response import Redirect

from hive_dashboard.auth import LoginRequired
from hivewire.errors import HiveError

log = structlog.get_logger("hive_dashboard.errors")

# Upstream failures the operator can act on are not the dashboard's fault; a
# service that is down is a 503, a timeout a 504, an internal error 502.
STATUS = {"internal": 502}


def hive_error(request: Request[Any, Any, Any], exc: HiveError) -> Response[Any]:
    status = STATUS.get(exc.code) or int(exc.status)
    return Response({"error": {"code": exc.code, "message": exc.message}}, status_code=status,
                    media_type=MediaType.JSON)


def login_required(request: Request[Any, Any, Any], exc: LoginRequired) -> Response[Any]:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect(f"/login?next={quote(target, safe='')}", status_code=303)


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    body: dict[str, Any] = {"error": {"code": _code(exc.status_code), "message": exc.detail}}
    if exc.extra:
        body["error"]["extra"] = exc.extra
    return Response(body, status_code=exc.status_code, media_type=MediaType.JSON, headers=exc.headers or None)


def _code(status: int) -> str:
    return {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "bad_request",
            409: "conflict", 413: "too_large"}.get(status, "internal" if status >= 500 else "bad_request")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    HiveError: hive_error,
    LoginRequired: login_required,
    HTTPException: http_error,
}
