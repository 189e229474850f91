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

from hivewire.names import validate_agent_name

FILE_NAME = "agents.json"
ANNOUNCE_FILE = "metrics.json"  # in an agent's state dir: {"instance", "metrics_url"}


def sd_path(home: Path) -> Path:
    return Path(home) / "prometheus" / FILE_NAME


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
    host = os.environ.get("HIVE_PROMSD_HOST", "").strip()
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
    """The metrics URL a harness announced (only if written by `instance`, when given)."""
    try:
        data = json.loads((Path(state_dir) / ANNOUNCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or (instance is not None and data.get("instance") != instance):
        return None
    url = data.get("metrics_url")
    return url if isinstance(url, str) and url else None
