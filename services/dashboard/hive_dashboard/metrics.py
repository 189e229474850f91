"""Prometheus metrics of the dashboard (`hive_dashboard_*`) and the latency middleware."""

from __future__ import annotations

import time

from litestar.types import ASGIApp, Receive, Scope, Send
from prometheus_client import Counter, Gauge, Histogram

SSE_CLIENTS = Gauge("hive_dashboard_sse_clients", "Browsers connected to the SSE stream.")
SSE_DROPPED = Counter("hive_dashboard_sse_dropped_total", "SSE clients dropped for falling behind.")
HUB_EVENTS = Counter("hive_dashboard_hub_events_total", "Events fanned out to browsers, by kind.", ["kind"])
BAD_MESSAGES = Counter("hive_dashboard_bad_messages_total", "Malformed NATS messages dropped, by family.", ["family"])
ACTIONS = Counter("hive_dashboard_actions_total", "Operator actions, by kind and outcome.", ["kind", "outcome"])
AUTH_FAILURES = Counter("hive_dashboard_auth_failures_total", "Refused requests, by reason.", ["reason"])
UPSTREAM_ERRORS = Counter("hive_dashboard_upstream_errors_total", "Failed NATS calls, by subject family and code.",
                          ["family", "code"])
LATENCY = Histogram(
    "hive_dashboard_request_duration_seconds",
    "HTTP request latency (SSE streams excluded).",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def latency_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [0]

        async def send_wrapper(message: dict) -> None:  # type: ignore[type-arg]
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)  # type: ignore[arg-type]

        try:
            await app(scope, receive, send_wrapper)  # type: ignore[arg-type]
        finally:
            route = scope.get("path_template") or "unmatched"  # type: ignore[call-overload]
            if route != "/api/stream":
                LATENCY.labels(scope["method"], route, str(status[0] or 500)).observe(time.perf_counter() - started)

    return middleware
