"""Layered configuration: defaults < environment < explicit keyword arguments.

Everything the dashboard reads from the environment is read here, once (each
variable declared in hivewire.config; a bad value raises ConfigError); the rest
of the package only sees a `DashboardConfig`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from litestar.config.allowed_hosts import AllowedHostsConfig

from hive_dashboard.hosts import host_config, parse_entries
from hivewire import config
from hivewire.settings import Settings, ensure_secret_file

TOKEN_FILE = "operator.token"


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
        cls, settings: Settings | None = None, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> DashboardConfig:
        s = settings or Settings.from_env(env)
        e = os.environ if env is None else env
        token = s.operator_token or ensure_secret_file(s.home / TOKEN_FILE)
        cfg = cls(
            settings=s,
            operator_token=token,
            cookie_secure=not config.DASHBOARD_INSECURE_COOKIE.get(e),
            ping_interval_s=config.DASHBOARD_PING_S.get(e),
            stale_after_s=config.DASHBOARD_STALE_S.get(e),
            sse_buffer=config.DASHBOARD_SSE_BUFFER.get(e),
            allowed_hosts=parse_entries(config.DASHBOARD_ALLOWED_HOSTS.get(e)),
            demo=config.DEMO.get(e),
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
