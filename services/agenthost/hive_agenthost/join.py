"""`hive host join`: trade a one-time token for this host's NATS identity.

Over HTTPS with `--ca-sha256`: the core's CA is fetched (`GET /ca.pem`), its
fingerprint checked against the pin (a mismatch is refused before the token is
sent or anything written), and the join request then verifies the server with
that CA alone. Writes, under this host's HIVE_HOME (0700): `host.json` (name,
the hive's NATS URL, the hub, the CA), `nats/creds/host.env` (0600) and the CA
as `tls/ca.pem`, which `hive-agenthost` and its harnesses check NATS's TLS
certificate against (HIVE_NATS_CA). `hive-agenthost` reads them at start.
"""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import msgspec

from hivewire import tls
from hivewire.errors import HiveError
from hivewire.names import validate_agent_name
from hivewire.wire.hosts import JoinReply, JoinRequest


@dataclass(frozen=True)
class HostConfig:
    name: str
    nats_url: str
    hub: str
    creds_file: str
    nats_ca: str = ""  # the core's CA (tls/ca.pem) when it joined over HTTPS


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
                      hub=d.get("hub", ""), creds_file=str(creds_file(home)) if d.get("auth", True) else "none",
                      nats_ca=d.get("nats_ca", ""))


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


def fetch_ca(url: str, pin: str, timeout: float) -> bytes:
    """The join endpoint's CA, refused unless its SHA-256 is `pin`."""
    # Unverified on purpose: nothing secret goes out, and what comes back counts only if it
    # matches the pin; the join itself is then verified against it.
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/ca.pem", timeout=timeout, context=insecure) as r:
            pem = r.read(64 * 1024)
        got = tls.fingerprint(pem)
    except ValueError:
        raise HiveError("forbidden", f"{url} sent no CA certificate at /ca.pem: not a hive's join endpoint; "
                                     "nothing was sent or written") from None
    except OSError as exc:
        raise HiveError("unavailable", f"cannot reach {url}: {exc}") from None
    if got != pin:
        raise HiveError("forbidden", f"{url} presented a CA with sha256 {got}, not the {pin} this host was "
                                     "invited with: another server, or someone in between; nothing was sent or "
                                     "written")
    return pem


def join(home: Path, url: str, name: str, token: str, timeout: float = 20.0, ca_sha256: str = "") -> HostConfig:
    name = validate_agent_name(name, allow_reserved=True)
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise HiveError("bad_request", f"the join URL must be https:// (or http:// on a trusted network), got {url}")
    ca_pem, ctx = b"", None
    if ca_sha256:
        try:
            pin = tls.normalize_fingerprint(ca_sha256)
        except ValueError as exc:
            raise HiveError("bad_request", str(exc)) from None
        if scheme != "https":
            raise HiveError("bad_request", f"--ca-sha256 pins an https:// join endpoint, got {url}")
        ca_pem = fetch_ca(url, pin, timeout)
        ctx = ssl.create_default_context(cadata=ca_pem.decode())
    body = msgspec.json.encode(JoinRequest(name=name, token=token))
    req = urllib.request.Request(url.rstrip("/") + "/join", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            rep = msgspec.json.decode(r.read(), type=JoinReply)
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read())["error"]
            raise HiveError(err["code"], err["message"]) from None
        except (ValueError, KeyError):
            raise HiveError("unavailable", f"join endpoint answered {exc.code}") from None
    except OSError as exc:
        why = getattr(exc, "reason", exc)
        if isinstance(why, ssl.SSLCertVerificationError):
            raise HiveError("forbidden", f"{url}: its certificate does not verify against the pinned CA "
                                         f"({why.verify_message}); if the name or address differs, add it to "
                                         "HIVE_TLS_SANS on the core host and restart it") from None
        raise HiveError("unavailable", f"cannot reach {url}: {exc}") from None
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if rep.creds:
        _write_private(creds_file(home), rep.creds)
    ca = ""
    if ca_pem:
        _write_private(tls.ca_path(home), ca_pem.decode())
        ca = str(tls.ca_path(home))
    cfg = {"name": rep.name, "nats_url": nats_url_for(url, rep), "hub": rep.hub, "joined_at": time.time(),
           "auth": bool(rep.creds), "nats_ca": ca}
    _write_private(host_file(home), json.dumps(cfg, indent=2) + "\n")
    return load_host(home)
