"""`hive up`'s first minute: pick free ports before anything starts, wait for the
dashboard's `/healthz`, then print one short block saying where Hive is.

Every port `hive up` (or a service it starts) would listen on is checked
before the first line is printed: a busy one (another Hive, any other program)
is replaced by a free port, so what is printed is what is served.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from hivewire.procs import free_port
from hivewire.settings import Settings

WILDCARDS = ("", "0.0.0.0", "::", "[::]")


def port_free(host: str, port: int) -> bool:
    """Nothing listens on host:port (a bind succeeds)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host.strip("[]") or "0.0.0.0", port))
        except OSError:
            return False
    return True


def pick_port(host: str, wanted: int) -> int:
    """`wanted` if free on `host` (0: any), else a free one."""
    if wanted and port_free(host, wanted):
        return wanted
    return free_port(host.strip("[]") or "127.0.0.1")


@dataclass
class Ports:
    """What `hive up` will listen on, decided before anything starts."""

    nats: int = 0  # 0: external NATS
    dashboard_host: str = "127.0.0.1"
    dashboard: int = 0  # 0: no dashboard in this run
    notes: list[str] = field(default_factory=list)  # "dashboard port 8000 is busy: using 41235"
    env: dict[str, dict[str, str]] = field(default_factory=dict)  # per service: env overrides

    @property
    def dashboard_url(self) -> str:
        host = "127.0.0.1" if self.dashboard_host in WILDCARDS else self.dashboard_host
        return f"http://{host}:{self.dashboard}/"


def plan_ports(s: Settings, services: tuple[str, ...], nats_port: int) -> Ports:
    """Check every port before anything is printed or started; replace busy ones by free ones."""
    ports = Ports()
    if not s.nats_url:
        ports.nats = pick_port("127.0.0.1", nats_port)
        if nats_port and ports.nats != nats_port:
            ports.notes.append(f"nats port {nats_port} is busy: using {ports.nats}")
    if "dashboard" in services:
        host, _, raw = s.dashboard_addr.rpartition(":")
        wanted = int(raw) if raw.isdigit() else 8000
        ports.dashboard_host = host or "127.0.0.1"
        ports.dashboard = pick_port(ports.dashboard_host, wanted)
        if wanted and ports.dashboard != wanted:
            ports.notes.append(f"dashboard port {wanted} is busy: using {ports.dashboard}")
        ports.env["dashboard"] = {"HIVE_DASHBOARD_ADDR": f"{ports.dashboard_host}:{ports.dashboard}"}
    for short in services:
        host, wanted = s.metrics_bind(short)
        if not wanted or short == "dashboard":
            continue
        got = pick_port(host, wanted)
        if got != wanted:
            ports.notes.append(f"{short} metrics port {wanted} is busy: using {got}")
            ports.env.setdefault(short, {})["HIVE_METRICS_ADDR"] = f"{host}:{got}"
    return ports


def healthz_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url + "healthz", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError, ValueError):
        return False


async def wait_healthz(url: str, timeout: float, stop: asyncio.Event) -> bool:
    """Poll `<url>healthz` until it answers 200, `stop` is set or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        if await asyncio.to_thread(healthz_ok, url):
            return True
        try:
            await asyncio.wait_for(stop.wait(), 0.2)
        except TimeoutError:
            pass
    return False


def say(line: str = "") -> None:
    """One plain line on stdout, never re-wrapped (a path or URL stays on one line), flushed."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def ready_block(s: Settings, ports: Ports, log_dir: Path, token_from_env: bool) -> list[str]:
    """The lines printed once Hive answers: where it is, how to log in, how to stop it."""
    token = "from HIVE_OPERATOR_TOKEN" if token_from_env else str(s.home / "operator.token")
    lines = ["Hive is ready"]
    if ports.dashboard:
        lines.append(f"  dashboard:  {ports.dashboard_url}")
        lines.append(f"  token:      {token}  (paste its contents at the login page)")
    lines.append(f"  logs:       {log_dir}")
    lines.append(f"  stop:       Ctrl-C here (or kill -TERM {os.getpid()})")
    return lines
