"""Layered configuration: defaults < environment < explicit keyword arguments.

Everything the dashboard reads from the environment is read here, once; the
rest of the package only sees a `DashboardConfig`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from litestar.config.allowed_hosts import AllowedHostsConfig

from hive_dashboard.demo import DEMO_ENV, is_demo
from hive_dashboard.hosts import host_config, parse_entries
from hivewire.settings import Settings, ensure_secret_file

TOKEN_FILE = "operator.token"


def _float(env: dict[str, str] | os._Environ[str], key: str, default: float) -> float:
    raw = env.get(key, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


@dataclass(frozen=True)
class DashboardConfig:
    settings: Settings
    operator_token: str
    cookie_secure: bool = True
    ping_interval_s: float = 15.0  # SSE keep-alive comment
    stale_after_s: float = 10.0  # a heartbeat older than this means dead
    sse_buffer: int = 2000  # ring buffer of recent SSE events for resume
    allowed_hosts: tuple[str, ...] = ()  # HIVE_DASHBOARD_ALLOWED_HOSTS: extra Host names (hosts.py)
    call_timeout_s: float = 3.0
    demo: bool = False  # HIVE_DEMO: started by `hive demo` (agents talk to the simulator): a banner on every page
    state_timeout_s: float = 0.8  # per-agent ctl.state on the overview
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(
        cls, settings: Settings | None = None, env: dict[str, str] | None = None, **overrides: Any
    ) -> DashboardConfig:
        s = settings or Settings.from_env(env)
        e = os.environ if env is None else env
        token = s.operator_token or ensure_secret_file(s.home / TOKEN_FILE)
        cfg = cls(
            settings=s,
            operator_token=token,
            cookie_secure=(e.get("HIVE_DASHBOARD_INSECURE_COOKIE", "") not in ("1", "true", "yes")),
            ping_interval_s=_float(e, "HIVE_DASHBOARD_PING_S", 15.0),
            stale_after_s=_float(e, "HIVE_DASHBOARD_STALE_S", 10.0),
            sse_buffer=int(_float(e, "HIVE_DASHBOARD_SSE_BUFFER", 2000)),
            allowed_hosts=parse_entries(e.get("HIVE_DASHBOARD_ALLOWED_HOSTS", "")),
            demo=is_demo(e.get(DEMO_ENV)),
        )
        return replace(cfg, **overrides) if overrides else cfg

    @property
    def bind(self) -> tuple[str, int]:
        host, _, port = self.settings.dashboard_addr.rpartition(":")
        return host or "127.0.0.1", int(port or 8000)

    @property
    def host_check(self) -> AllowedHostsConfig:
        """The Host header values the dashboard answers (hosts.py)."""
        return host_config(self.bind, self.allowed_hosts)
