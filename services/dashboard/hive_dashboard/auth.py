"""Operator auth: a session cookie derived from the operator token, guards, CSRF.

* The session cookie (`hive_session`, Secure, HttpOnly, SameSite=Strict) is
  an HMAC of the operator token, so it never carries the token itself and
  every session dies when the token changes.
* API clients may send `Authorization: Bearer <token>` instead; such
  requests carry no ambient credentials, so they need no CSRF token.
* CSRF: a double-submit token. Every page sets `hive_csrf` (readable by our
  JS, SameSite=Strict) and embeds it; a cookie-authenticated state-changing
  request must echo it in `X-CSRF-Token` (or the `_csrf` form field) and must
  not come from another origin (`Origin`, `Sec-Fetch-Site`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from hive_dashboard.config import DashboardConfig
from hive_dashboard.metrics import AUTH_FAILURES

SESSION_COOKIE = "hive_session"
CSRF_COOKIE = "hive_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_MAX_AGE = 30 * 24 * 3600


class LoginRequired(NotAuthorizedException):
    """Raised by the page guard; the app turns it into a redirect to /login."""


def _cfg(connection: ASGIConnection[Any, Any, Any, Any]) -> DashboardConfig:
    cfg: DashboardConfig = connection.app.state.cfg
    return cfg


def _mac(token: str, msg: str) -> str:
    return hmac.new(token.encode(), msg.encode(), hashlib.sha256).hexdigest()


def make_session(cfg: DashboardConfig, now: float | None = None) -> str:
    issued = str(int(now if now is not None else time.time()))
    return f"v1.{issued}.{_mac(cfg.operator_token, 'session:' + issued)}"


def session_valid(cfg: DashboardConfig, value: str | None, now: float | None = None) -> bool:
    if not value:
        return False
    parts = value.split(".")
    if len(parts) != 3 or parts[0] != "v1" or not parts[1].isdigit():
        return False
    age = (now if now is not None else time.time()) - int(parts[1])
    if age < -60 or age > SESSION_MAX_AGE:
        return False
    return hmac.compare_digest(parts[2], _mac(cfg.operator_token, "session:" + parts[1]))


def token_valid(cfg: DashboardConfig, token: str) -> bool:
    return hmac.compare_digest(token.strip().encode(), cfg.operator_token.encode())


def how_authenticated(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """'cookie', 'bearer' or None."""
    cfg = _cfg(connection)
    auth = connection.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and token_valid(cfg, auth[7:]):
        return "bearer"
    if session_valid(cfg, connection.cookies.get(SESSION_COOKIE)):
        return "cookie"
    return None


def same_origin(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    site = connection.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = connection.headers.get("origin")
    if origin is None:
        return True
    host = connection.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def csrf_ok(connection: ASGIConnection[Any, Any, Any, Any], submitted: str | None) -> bool:
    expected = connection.cookies.get(CSRF_COOKIE)
    return bool(expected and submitted and hmac.compare_digest(expected.encode(), submitted.encode()))


def check_state_change(connection: ASGIConnection[Any, Any, Any, Any], submitted: str | None) -> None:
    if not same_origin(connection):
        AUTH_FAILURES.labels("cross_origin").inc()
        raise PermissionDeniedException("cross-origin request refused")
    if not csrf_ok(connection, submitted):
        AUTH_FAILURES.labels("csrf").inc()
        raise PermissionDeniedException("missing or wrong CSRF token")


def api_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    how = how_authenticated(connection)
    if how is None:
        AUTH_FAILURES.labels("unauthenticated").inc()
        raise NotAuthorizedException("log in first (session cookie or Authorization: Bearer <operator token>)")
    if how == "cookie" and connection.scope.get("method", "GET") not in SAFE_METHODS:
        check_state_change(connection, connection.headers.get(CSRF_HEADER))


def page_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if how_authenticated(connection) is None:
        AUTH_FAILURES.labels("unauthenticated_page").inc()
        raise LoginRequired("log in first")


def csrf_cookie_for(connection: ASGIConnection[Any, Any, Any, Any]) -> tuple[str, Cookie | None]:
    """The browser's CSRF token, minting (and returning a cookie for) a new one if absent."""
    existing = connection.cookies.get(CSRF_COOKIE)
    if existing and len(existing) >= 32:
        return existing, None
    value = secrets.token_urlsafe(32)
    return value, Cookie(
        key=CSRF_COOKIE, value=value, path="/", httponly=False, samesite="strict", secure=_cfg(connection).cookie_secure
    )


def session_cookie(cfg: DashboardConfig) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE, value=make_session(cfg), path="/", httponly=True, samesite="strict",
        secure=cfg.cookie_secure, max_age=SESSION_MAX_AGE,
    )


def safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
