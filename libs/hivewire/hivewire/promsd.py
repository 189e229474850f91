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
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from hivewire import config
from hivewire.names import validate_agent_name

FILE_NAME = "agents.json"
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
    if not isinstance(url, str) or len(url) > 200:
        raise ValueError("metrics URL refused: not a short string")
    u = urlsplit(url)
    try:
        port = u.port
    except ValueError:
        port = None
    hosts = LOOPBACK + WILDCARD if any_bind else LOOPBACK
    if (u.scheme != "http" or u.hostname not in hosts or u.username is not None or u.password is not None
            or port is None or not 0 < port < 65536 or u.path != METRICS_PATH or u.query or u.fragment
            or "@" in u.netloc):
        raise ValueError(f"metrics URL refused: {url[:200]!r} is not http://127.0.0.1:<port>{METRICS_PATH}")
    return url


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
    return {"targets": [f"{u.hostname}:{u.port}"], "labels": labels}


def render(targets: Mapping[str, str]) -> str:
    groups = [target_group(a, targets[a]) for a in sorted(targets)]
    return json.dumps(groups, indent=2) + "\n"


def read_targets(path: Path) -> dict[str, str]:
    """agent -> metrics URL, from a file this module wrote ({} when absent or unreadable)."""
    try:
        groups = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    out: dict[str, str] = {}
    for g in groups if isinstance(groups, list) else []:
        labels = g.get("labels", {})
        for t in g.get("targets", []):
            scheme = labels.get("__scheme__", "http")
            out[labels["agent"]] = f"{scheme}://{t}{labels.get('__metrics_path__', '/metrics')}"
    return out


def write_targets(path: Path, targets: Mapping[str, str]) -> None:
    """Replace the whole file atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render(targets)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.fchmod(fd, 0o644)  # readable by Prometheus whatever the service's umask (077)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
    with _locked(path):
        targets = read_targets(path)
        if metrics_url:
            target_group(agent, metrics_url)  # validate before writing anything
            targets[agent] = metrics_url
        else:
            targets.pop(agent, None)
        write_targets(path, targets)
    return targets


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
