"""Prometheus file-based service discovery for agents (`file_sd_configs`).

Every harness serves `/metrics` on a port chosen at spawn. The deployer keeps
`HIVE_HOME/prometheus/agents.json` current so Prometheus scrapes each agent
with the label `agent="<name>"`:

    from hivewire import promsd
    promsd.set_agent(settings.home, name, metrics_url)   # after spawn/start
    promsd.set_agent(settings.home, name, None)          # after stop/destroy

How the deployer learns a harness's URL: the harness binds any free port
and writes `announce(state_dir, instance, metrics_url)` into its state dir
before its first heartbeat; when the deployer sees a presence heartbeat of a
new instance it reads `announced(state_dir, instance)` and calls
`set_agent`. It removes the target when it stops an agent on purpose (a
crashed agent keeps its target, so `up == 0` shows it dead until it is
restarted on a new port).

The file is rewritten atomically (Prometheus re-reads it on change), 0644
because Prometheus usually runs as its own user; it holds no secret.
Format (prometheus.io/docs/guides/file-sd):

    [{"targets": ["127.0.0.1:40123"], "labels": {"agent": "alice",
      "service": "hive-harness", "__metrics_path__": "/metrics"}}]

Agents on agent hosts (`set_host`, from the deployer's host heartbeats): their
targets are `<registered address>:<port>` with the label `host="<host>"`, the
address the host joined from and only the port from its report; the host's own
services (`hive-agenthost`, its harness pool) go into `hosts.json` beside
`agents.json` (job `hive-hosts`).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from hivewire import config
from hivewire.names import validate_agent_name

FILE_NAME = "agents.json"
HOSTS_FILE_NAME = "hosts.json"  # agent hosts' own services (hive-agenthost, a harness pool), beside FILE_NAME
ANNOUNCE_FILE = "metrics.json"  # in an agent's state dir: {"instance", "metrics_url"}
METRICS_PATH = "/metrics"
LOOPBACK = ("127.0.0.1", "::1")
WILDCARD = ("0.0.0.0", "::")  # a harness bound on every address (containers): only with HIVE_PROMSD_HOST


def check_announced_url(url: object, *, any_bind: bool = False) -> str:
    """An agent's announced metrics URL, if it is `http://127.0.0.1:<port>/metrics`
    (or `[::1]`); else ValueError. The agent can rewrite its metrics.json, and the
    file_sd target makes Prometheus fetch that URL: only its own loopback port and
    the fixed path, so it cannot point Prometheus at another host or path.
    `any_bind`: a wildcard host (0.0.0.0, ::) is accepted too (its host is replaced
    by HIVE_PROMSD_HOST, so only the port comes from the agent)."""
    hosts = LOOPBACK + WILDCARD if any_bind else LOOPBACK
    host, _ = _split_metrics_url(url, f"http://127.0.0.1:<port>{METRICS_PATH}")
    if host not in hosts:
        raise ValueError(f"metrics URL refused: {str(url)[:200]!r} is not http://127.0.0.1:<port>{METRICS_PATH}")
    return str(url)


def _split_metrics_url(url: object, expected: str) -> tuple[str, int]:
    """(host, port) of an `http://<host>:<port>/metrics` URL with nothing else in it, else ValueError."""
    if not isinstance(url, str) or len(url) > 200:
        raise ValueError("metrics URL refused: not a short string")
    u = urlsplit(url)
    try:
        port = u.port
    except ValueError:
        port = None
    if (u.scheme != "http" or not u.hostname or "@" in u.netloc or port is None or not 0 < port < 65536
            or u.path != METRICS_PATH or u.query or u.fragment):
        raise ValueError(f"metrics URL refused: {url[:200]!r} is not {expected}")
    return u.hostname, port


def sd_path(home: Path) -> Path:
    """`HIVE_PROMSD_FILE`, else `HIVE_HOME/prometheus/agents.json`. HIVE_HOME is private (0700), so a
    Prometheus running as another user needs the file elsewhere: it holds targets, no secret."""
    override = config.PROMSD_FILE.get()
    return Path(override) if override else Path(home) / "prometheus" / FILE_NAME


def target_group(agent: str, metrics_url: str) -> dict[str, object]:
    """One file_sd target group for an agent's `/metrics` URL."""
    u = urlsplit(metrics_url)
    if u.scheme not in ("http", "https") or not u.hostname or not u.port:
        raise ValueError(f"not a metrics URL with host and port: {metrics_url!r}")
    labels = {
        "agent": validate_agent_name(agent, allow_reserved=True),
        "service": "hive-harness",
        "__metrics_path__": u.path or "/metrics",
    }
    if u.scheme == "https":
        labels["__scheme__"] = "https"
    host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname  # an IPv6 address keeps its brackets
    return {"targets": [f"{host}:{u.port}"], "labels": labels}


def render(targets: Mapping[str, str]) -> str:
    groups = [target_group(a, targets[a]) for a in sorted(targets)]
    return json.dumps(groups, indent=2) + "\n"


def read_targets(path: Path) -> dict[str, str]:
    """agent -> metrics URL, from a file this module wrote ({} when absent or unreadable)."""
    out: dict[str, str] = {}
    for g in _read_groups(path):
        labels, targets = _labels(g), g.get("targets")
        for t in targets if isinstance(targets, list) and "agent" in labels else []:
            scheme, mpath = labels.get("__scheme__", "http"), labels.get("__metrics_path__", METRICS_PATH)
            out[labels["agent"]] = f"{scheme}://{t}{mpath}"
    return out


def write_targets(path: Path, targets: Mapping[str, str]) -> None:
    """Replace the whole file atomically (0644: readable by Prometheus whatever the service's umask)."""
    _write_groups(path, [target_group(a, targets[a]) for a in sorted(targets)])


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read_groups(path: Path) -> list[dict[str, object]]:
    try:
        groups = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return []
    return [g for g in groups if isinstance(g, dict)] if isinstance(groups, list) else []


def _labels(group: Mapping[str, object]) -> dict[str, str]:
    labels = group.get("labels")
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def _write_groups(path: Path, groups: list[dict[str, object]]) -> bool:
    """Replace the file atomically when `groups` differ from it; whether it changed."""
    def key(g: dict[str, object]) -> tuple[str, str, str]:
        lb = _labels(g)
        return lb.get("agent", ""), lb.get("host", ""), lb.get("service", "")

    groups = sorted(groups, key=key)
    text = json.dumps(groups, indent=2) + "\n"
    path = Path(path)
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.fchmod(fd, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return True


def set_agent(home: Path, agent: str, metrics_url: str | None) -> dict[str, str]:
    """Add/update (`metrics_url`) or remove (`None`) one agent; returns the new map.

    `HIVE_PROMSD_HOST` replaces the URL's host (a harness bound on 0.0.0.0 in a
    container is scraped through the container's name, e.g. `deployer`).
    """
    path = sd_path(home)
    agent = validate_agent_name(agent, allow_reserved=True)
    host = config.PROMSD_HOST.get()
    if metrics_url:
        check_announced_url(metrics_url, any_bind=bool(host))  # before anything is written
    if metrics_url and host:
        u = urlsplit(metrics_url)
        metrics_url = u._replace(netloc=f"{host}:{u.port}").geturl()
    new = target_group(agent, metrics_url) if metrics_url else None  # validate before writing anything
    with _locked(path):
        groups = [g for g in _read_groups(path) if _labels(g).get("agent") != agent]
        _write_groups(path, groups + ([new] if new else []))
    return read_targets(path)


def hosts_sd_path(home: Path) -> Path:
    """Agent hosts' own services: `hosts.json` beside the agents' file."""
    return sd_path(home).with_name(HOSTS_FILE_NAME)


def remote_target(addr: str, port: object) -> str:
    """`<addr>:<port>` of a scrape target on an agent host: `addr` the host's registered
    address (an IP the hub recorded), `port` the only thing taken from the host's report;
    ValueError for anything but an IP and a port in 1..65535."""
    ip = ipaddress.ip_address(addr)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"not a port: {port!r}")
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def set_host(home: Path, host: str, addr: str | None, agents: Mapping[str, int],
             services: Mapping[str, int]) -> bool:
    """Replace every target of agent host `host`: `agents` (agent -> its harness's port) in the
    agents' file, `services` (service name -> port: hive-agenthost, hive-harness-pool) in
    `hosts.json`, all at `addr`; `addr` None removes them all. Whether a file changed.
    ValueError (nothing written) for a bad address, name or port."""
    host = validate_agent_name(host, allow_reserved=True)
    agent_groups: list[dict[str, object]] = []
    service_groups: list[dict[str, object]] = []
    if addr is not None:
        for agent, port in sorted(agents.items()):
            agent_groups.append({"targets": [remote_target(addr, port)], "labels": {
                "agent": validate_agent_name(agent, allow_reserved=True), "service": "hive-harness", "host": host,
                "__metrics_path__": METRICS_PATH}})
        for service, port in sorted(services.items()):
            service_groups.append({"targets": [remote_target(addr, port)], "labels": {
                "service": validate_agent_name(service, allow_reserved=True), "host": host,
                "__metrics_path__": METRICS_PATH}})
    changed = False
    for path, mine in ((sd_path(home), agent_groups), (hosts_sd_path(home), service_groups)):
        with _locked(path):
            if not mine and not path.exists():
                continue
            others = [g for g in _read_groups(path) if _labels(g).get("host") != host]
            changed = _write_groups(path, others + mine) or changed
    return changed


def announce(state_dir: Path, instance: str, metrics_url: str) -> Path:
    """Written by a harness at start: where this instance serves /metrics."""
    path = Path(state_dir) / ANNOUNCE_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"instance": instance, "metrics_url": metrics_url}) + "\n")
    os.replace(tmp, path)
    return path


def announced(state_dir: Path, instance: str | None = None) -> str | None:
    """The metrics URL a harness announced (only if written by `instance`, when given);
    None when there is none. ValueError (the deployer logs and counts it) when the URL
    is not the agent's own loopback `/metrics` (`check_announced_url`)."""
    try:
        data = json.loads((Path(state_dir) / ANNOUNCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or (instance is not None and data.get("instance") != instance):
        return None
    url = data.get("metrics_url")
    if url is None or url == "":
        return None
    return check_announced_url(url, any_bind=bool(config.PROMSD_HOST.get()))


def announced_port(state_dir: Path) -> int | None:
    """On an agent host: the port of the `/metrics` its harness announced (None when none).
    Only the port goes into the host's heartbeat; the hub puts it at the host's registered
    address. ValueError for anything but `http://<address>:<port>/metrics`."""
    try:
        data = json.loads((Path(state_dir) / ANNOUNCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    url = data.get("metrics_url") if isinstance(data, dict) else None
    return url_port(url) if url else None


def url_port(url: object) -> int:
    """The port of a `http://<address>:<port>/metrics` URL this host serves, else ValueError."""
    return _split_metrics_url(url, f"http://<address>:<port>{METRICS_PATH}")[1]

