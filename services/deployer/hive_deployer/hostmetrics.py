"""Prometheus targets on agent hosts, from their heartbeats (hivewire.promsd.set_host).

A host reports ports only (its harnesses', its harness pool's, hive-agenthost's own
/metrics on `HIVE_HOST_METRICS_BIND`); each target is `<address>:<port>` at the
address the host joined from (`addr` in the hosts registry), so neither a
compromised host nor an agent can point Prometheus at another machine. A port out
of range, or for an agent not placed on that host, is dropped, logged and counted
(`hive_deployer_failures_total{what="promsd"}`). A removed or lost host has no
targets; a host back lists them again with its next heartbeat.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Mapping
from pathlib import Path

import structlog

from hive_deployer import metrics
from hivewire import promsd
from hivewire.wire.hosts import HostHeartbeat

log = structlog.get_logger("hive_deployer.hostmetrics")

Want = tuple[str, tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]] | None  # addr, agents, services


def peer_addr(addr: str) -> str:
    """The address recorded at join: the sender's IP ("" when it is none; an IPv4-mapped IPv6 as IPv4)."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return ""
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return str(mapped or ip)


def _port_ok(port: int) -> bool:
    return 0 < port < 65536


def wanted(host: str, addr: str, hb: HostHeartbeat, placements: Mapping[str, str]) -> Want:
    """The targets `hb` asks for that the hub accepts (refusals are logged and counted)."""
    if not addr:
        return None
    agents: dict[str, int] = {}
    for a in hb.agents:
        if not a.metrics_port:
            continue
        if placements.get(a.name) != host or not _port_ok(a.metrics_port):
            metrics.FAILURES.labels("promsd").inc()
            log.warning("host_metrics_port_refused", host=host, agent=a.name, port=a.metrics_port,
                        reason="not placed on this host" if placements.get(a.name) != host else "not a port")
            continue
        agents[a.name] = a.metrics_port
    services: dict[str, int] = {}
    for service, port in (("hive-agenthost", hb.metrics_port), ("hive-harness-pool", hb.pool_metrics_port)):
        if not port:
            continue
        if not _port_ok(port):
            metrics.FAILURES.labels("promsd").inc()
            log.warning("host_metrics_port_refused", host=host, service=service, port=port, reason="not a port")
            continue
        services[service] = port
    return addr, tuple(sorted(agents.items())), tuple(sorted(services.items()))


class HostTargets:
    """What each host's targets should be, written by one writer at a time, the latest wish winning."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.want: dict[str, Want] = {}
        self.written: dict[str, Want] = {}
        self._lock = asyncio.Lock()
        self._noaddr: set[str] = set()

    async def report(self, host: str, addr: str, hb: HostHeartbeat, placements: Mapping[str, str]) -> None:
        if not addr and (hb.metrics_port or hb.pool_metrics_port or any(a.metrics_port for a in hb.agents)):
            if host not in self._noaddr:  # once per host and process: it joined before addresses were kept
                self._noaddr.add(host)
                log.warning("host_metrics_no_address", host=host, hint="the host has no address recorded at "
                            "join: remove it and join it again to have it scraped")
        await self.set(host, wanted(host, addr, hb, placements))

    async def set(self, host: str, want: Want) -> None:
        self.want[host] = want
        async with self._lock:
            want = self.want.get(host)
            if want == self.written.get(host, None) and host in self.written:
                return
            try:
                if want is None:
                    await asyncio.to_thread(promsd.set_host, self.home, host, None, {}, {})
                else:
                    addr, agents, services = want
                    await asyncio.to_thread(promsd.set_host, self.home, host, addr, dict(agents), dict(services))
            except (OSError, ValueError) as exc:
                metrics.FAILURES.labels("promsd").inc()
                log.warning("promsd_failed", host=host, error=str(exc))
                return
            self.written[host] = want
            log.info("host_metrics_listed", host=host, addr=want[0] if want else None,
                     agents=[a for a, _ in want[1]] if want else [], services=[s for s, _ in want[2]] if want else [])

    async def drop(self, host: str) -> None:
        """A removed or lost host: none of its targets (a lost one's come back with its next report)."""
        await self.set(host, None)
