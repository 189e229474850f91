"""Prometheus helpers: the `/metrics` HTTP server and naming rules.

Names follow Prometheus conventions: a `hive_` prefix, base units
(`_seconds`, `_bytes`), counters ending in `_total`. `check_name` enforces
that in tests over every registered metric.
"""

from __future__ import annotations

import re
from bisect import bisect_left

from prometheus_client import REGISTRY, Gauge, Histogram, start_http_server
from prometheus_client.registry import CollectorRegistry

BUILD_INFO = Gauge("hive_build_info", "Version of the running Hive service.", ["service", "version"])
UP_SINCE = Gauge("hive_process_start_time_seconds", "Unix time the Hive service started.", ["service"])

_NAME = re.compile(r"^hive_[a-z0-9_]+$")
_BAD_UNITS = ("_ms", "_milliseconds", "_kb", "_mb", "_minutes", "_hours")


def check_name(name: str, kind: str) -> list[str]:
    """Problems with a metric family name (empty when it follows the rules)."""
    problems = []
    if not _NAME.match(name) and not name.startswith(("python_", "process_")):
        problems.append(f"{name}: must be snake_case with the hive_ prefix")
    if any(name.endswith(u) or f"{u}_" in name for u in _BAD_UNITS):
        problems.append(f"{name}: use base units (seconds, bytes)")
    if kind == "counter" and name.endswith("_total") is False:
        problems.append(f"{name}: counters end in _total")
    return problems


def observe_many(hist: Histogram, amount: float, n: int) -> None:
    """`n` observations of `amount` in a labelled histogram, at the cost of one: a batch
    endpoint's requests share their latency, and `observe` per request (two locked
    increments and a bucket search each) showed in the broker's CPU per send. Falls back
    to `observe` per request where prometheus_client's internals differ (tests/lib/test_metrics.py
    checks both read as n observations)."""
    buckets, bounds, total = (getattr(hist, a, None) for a in ("_buckets", "_upper_bounds", "_sum"))
    if not (isinstance(buckets, list) and isinstance(bounds, list) and total is not None):
        for _ in range(n):
            hist.observe(amount)
        return
    total.inc(amount * n)
    buckets[bisect_left(bounds, amount)].inc(n)  # the first bound >= amount, as observe picks; the last is +Inf


def serve_metrics(host: str, port: int, registry: CollectorRegistry = REGISTRY) -> tuple[str, int, object]:
    """Start the `/metrics` server on a thread; returns (host, bound port, server)."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return host, int(server.server_port), server
