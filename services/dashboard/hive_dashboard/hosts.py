"""The Host header check (DNS rebinding): serve only the names the dashboard is reached by.

A page on `evil.example` whose name an attacker re-points at 127.0.0.1 reaches
the dashboard from the operator's own browser, same-origin as far as the
browser knows; only the `Host: evil.example:8000` it sends gives it away. So
every request must name one of: the configured bind address (unless it is a
wildcard such as 0.0.0.0) with its port, `127.0.0.1`, `localhost` or `[::1]`
with that port, or a name listed in `HIVE_DASHBOARD_ALLOWED_HOSTS`
(comma-separated `name` or `name:port`; a bare name is accepted with the
dashboard's port and without a port, as a reverse proxy on 80/443 sends it).
Anything else gets 400 before any handler or auth runs, logged
(`host_refused`) and counted (`hive_dashboard_auth_failures_total{reason="host"}`).

Built on Litestar's `AllowedHostsMiddleware` (its matching, from an
`AllowedHostsConfig`), with its refusal replaced by one that says what to do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

import structlog
from litestar.config.allowed_hosts import AllowedHostsConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.middleware.allowed_hosts import AllowedHostsMiddleware
from litestar.response.base import ASGIResponse
from litestar.status_codes import HTTP_400_BAD_REQUEST
from litestar.types import Receive, Scope, Send

from hive_dashboard.metrics import AUTH_FAILURES

log = structlog.get_logger("hive_dashboard.hosts")

ENV = "HIVE_DASHBOARD_ALLOWED_HOSTS"
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
WILDCARD = ("", "0.0.0.0", "::", "[::]")
# a DNS name or IPv4 address, or a bracketed IPv6 address; optional :port. No wildcards.
ENTRY_RE = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?)(:[0-9]{1,5})?")


def parse_entries(raw: str) -> tuple[str, ...]:
    """`HIVE_DASHBOARD_ALLOWED_HOSTS`: valid entries, lowercased; the rest logged and ignored."""
    out = []
    for item in re.split(r"[,\s]+", raw.strip().lower()):
        if not item:
            continue
        if ENTRY_RE.fullmatch(item):
            out.append(item)
        else:
            log.warning("allowed_host_ignored", entry=item[:100], why="not a host name or address[:port]")
    return tuple(out)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def accepted_hosts(bind: tuple[str, int], extra: Iterable[str] = ()) -> list[str]:
    """Every Host header value accepted, lowercased."""
    host, port = bind
    names = [*LOOPBACK]
    if host.lower() not in WILDCARD:
        names.append(_bracket(host.lower()))
    out = {f"{n}:{port}" for n in names}
    if port == 80:  # a browser leaves the default port out
        out.update(names)
    for entry in extra:
        if re.search(r":[0-9]+$", entry) and not entry.endswith("]"):
            out.add(entry)
        else:
            out.update({entry, f"{entry}:{port}"})
    return sorted(out)


def host_config(bind: tuple[str, int], extra: Iterable[str] = ()) -> AllowedHostsConfig:
    return AllowedHostsConfig(allowed_hosts=accepted_hosts(bind, extra), www_redirect=False)


class HostCheck(AllowedHostsMiddleware):
    """`AllowedHostsMiddleware` matching the lowercased Host, refusing with a clear message."""

    def __init__(self, app: object, config: AllowedHostsConfig) -> None:
        if any(h == "*" or h.startswith("*.") for h in config.allowed_hosts):
            raise ValueError("the dashboard's Host check takes no wildcards")
        super().__init__(app=app, config=config)  # type: ignore[arg-type]
        self.allowed = config.allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = MutableScopeHeaders(scope=scope).get("host")
        if host is not None and self.allowed_hosts_regex is not None \
                and self.allowed_hosts_regex.fullmatch(host.strip().lower()):
            await self.app(scope, receive, send)
            return
        shown = (host or "")[:100]
        AUTH_FAILURES.labels("host").inc()
        log.warning("host_refused", host=shown, path=str(scope.get("path", ""))[:200])
        message = (f"Host {shown!r} is not a name this dashboard serves (DNS rebinding guard); use "
                   f"{self.allowed[0]!r} or another listed name, or add it to {ENV}")
        body = json.dumps({"error": {"code": "bad_request", "message": message}}).encode()
        await ASGIResponse(body=body, status_code=HTTP_400_BAD_REQUEST, media_type="application/json")(
            scope, receive, send)
