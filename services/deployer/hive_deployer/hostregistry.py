"""The hub's record of agent hosts: `hosts/registry.json` (hosts and placements), what the
deployer knows of each host's agents and heartbeats, and the host settings."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hivewire import config
from hivewire.wire.hosts import HostHeartbeat


def meminfo() -> tuple[int, int]:
    """(MemTotal, MemAvailable) in bytes, from /proc/meminfo (0, 0 where there is none)."""
    try:
        rows = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        return int(rows["MemTotal"].split()[0]) * 1024, int(rows["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 0, 0


@dataclass
class Remote:
    host: str
    pid: int | None
    started_at: float  # the agent host's clock


@dataclass
class Live:
    seen: float = 0.0  # monotonic, the hub's clock
    seen_wall: float = 0.0
    hb: HostHeartbeat | None = None
    lost: bool = False


@dataclass
class HostOptions:
    name: str = "core"
    lost_s: float = 10.0
    agent_limit: int = 0
    join_addr: str = ""  # host:port of the join endpoint; "" = no joins
    join_url: str = ""  # what `hive host add` prints (default https://<join_addr>, http:// on loopback)
    nats_urls: list[str] = field(default_factory=list)  # advertised to joining hosts
    nats_port: int = 4222
    tls: bool | None = None  # the join endpoint over HTTPS; None: whenever it listens beyond loopback

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HostOptions:
        """Each a variable declared in hivewire.config (a bad value raises ConfigError)."""
        urls = [u.strip() for u in config.HOSTS_NATS_URLS.get(env).split(",") if u.strip()]
        return cls(name=config.HOST_NAME.get(env), lost_s=config.HOST_LOST_S.get(env),
                   agent_limit=config.HOST_AGENT_LIMIT.get(env), join_addr=config.JOIN_ADDR.get(env),
                   join_url=config.JOIN_URL.get(env), nats_urls=urls, nats_port=config.HOSTS_NATS_PORT.get(env))


class Registry:
    """`hosts/registry.json`: written whole, atomically, 0600; only the deployer writes it."""

    def __init__(self, home: Path) -> None:
        self.path = home / "hosts" / "registry.json"
        self.hosts: dict[str, dict[str, Any]] = {}
        self.placements: dict[str, str] = {}
        if self.path.exists():
            data = json.loads(self.path.read_text())
            self.hosts, self.placements = data.get("hosts", {}), data.get("placements", {})

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(".registry.json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"hosts": self.hosts, "placements": self.placements}, f, indent=2, sort_keys=True)
        os.replace(tmp, self.path)
