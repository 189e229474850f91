"""`hive host join`: trade a one-time token for this host's NATS identity.

Writes, under this host's HIVE_HOME (0700): `host.json` (name, the hive's
NATS URL, the hub) and `nats/creds/host.env` (0600). `hive-agenthost` reads
both at start.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import msgspec

from hivewire.errors import HiveError
from hivewire.names import validate_agent_name
from hivewire.wire.hosts import JoinReply, JoinRequest


@dataclass(frozen=True)
class HostConfig:
    name: str
    nats_url: str
    hub: str
    creds_file: str


def host_file(home: Path) -> Path:
    return Path(home) / "host.json"


def creds_file(home: Path) -> Path:
    return Path(home) / "nats" / "creds" / "host.env"


def load_host(home: Path) -> HostConfig:
    p = host_file(home)
    if not p.exists():
        raise SystemExit(f"{p} is missing: run `hive host join URL --name NAME --token TOKEN` on this host first")
    d = json.loads(p.read_text())
    return HostConfig(name=validate_agent_name(d["name"], allow_reserved=True), nats_url=d["nats_url"],
                      hub=d.get("hub", ""), creds_file=str(creds_file(home)) if d.get("auth", True) else "none")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def nats_url_for(url: str, rep: JoinReply) -> str:
    """The hub's advertised NATS URLs, else its join URL's host on the advertised port."""
    if rep.nats_urls:
        return ",".join(rep.nats_urls)
    host = urllib.parse.urlsplit(url).hostname or "127.0.0.1"
    return f"nats://{host}:{rep.nats_port}"


def join(home: Path, url: str, name: str, token: str, timeout: float = 20.0) -> HostConfig:
    name = validate_agent_name(name, allow_reserved=True)
    body = msgspec.json.encode(JoinRequest(name=name, token=token))
    req = urllib.request.Request(url.rstrip("/") + "/join", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            rep = msgspec.json.decode(r.read(), type=JoinReply)
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read())["error"]
            raise HiveError(err["code"], err["message"]) from None
        except (ValueError, KeyError):
            raise HiveError("unavailable", f"join endpoint answered {exc.code}") from None
    except OSError as exc:
        raise HiveError("unavailable", f"cannot reach {url}: {exc}") from None
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if rep.creds:
        _write_private(creds_file(home), rep.creds)
    cfg = {"name": rep.name, "nats_url": nats_url_for(url, rep), "hub": rep.hub, "joined_at": time.time(),
           "auth": bool(rep.creds)}
    _write_private(host_file(home), json.dumps(cfg, indent=2) + "\n")
    return load_host(home)
