"""`hive doctor`: can this host run the hive's agents? Each check says what is wrong and the fix.

Checks: the agent CLI (found, its version against the pin), each agent's
credentials, the sandbox (bubblewrap confines; cgroup limits can be made),
NATS reachable, disk space under HIVE_HOME, the ports `hive up` wants.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from hive_harness import tokens
from hive_harness.agent_cli import agent_cmd
from hive_harness.limits import CGROUP_ROOT
from hivewire import config
from hivewire.confine import FIX_BWRAP, bwrap_error
from hivewire.settings import Settings

MIN_FREE_BYTES = 2 << 30
CRED_ENV = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    warn: bool = False  # a failure that does not stop the hive (e.g. no cgroup limits)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def pinned_version(root: Path | None = None) -> str | None:
    """The CLI version scripts/install pins, when run from a checkout."""
    root = root or Path(__file__).resolve().parents[3]
    try:
        text = (root / "scripts" / "install").read_text()
    except OSError:
        return None
    m = re.search(r"^CLAUDE_VERSION=(\S+)", text, re.M)
    return m.group(1) if m else None


def check_cli() -> Check:
    argv = agent_cmd()
    exe = shutil.which(argv[0]) if argv else None
    if exe is None:
        local = Path(__file__).resolve().parents[3] / ".tools/node_modules/.bin/claude"
        hint = f"HIVE_AGENT_CMD={local}" if local.exists() else "HIVE_AGENT_CMD to its path"
        return Check("agent_cli", False, f"agent CLI {argv[0] if argv else ''!r} not found",
                     f"run scripts/install (it puts claude in .tools), then set {hint}")
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("agent_cli", False, f"{exe} --version failed: {exc}", "reinstall it with scripts/install")
    version = (out.stdout.strip().split() or ["?"])[0]
    pin = pinned_version()
    if out.returncode != 0:
        return Check("agent_cli", False, f"{exe} --version exited {out.returncode}",
                     "reinstall it with scripts/install")
    if pin and version != pin:
        return Check("agent_cli", False, f"{exe} is {version}, the pin is {pin}", "run scripts/install", warn=True)
    return Check("agent_cli", True, f"{exe} {version}")


def check_credentials(home: Path, env: dict[str, str]) -> list[Check]:
    agents = sorted(p for p in (home / "agents").glob("*") if p.is_dir() and not p.name.startswith("."))
    fleet = tokens.read(tokens.fleet_path(home)) is not None
    from_env = [k for k in CRED_ENV if env.get(k)]
    out = []
    for a in agents:
        creds = a / "creds"
        found = [w for w, have in (("oauth-token", tokens.read(tokens.agent_path(creds)) is not None),
                                   ("login", (creds / ".credentials.json").is_file()),
                                   ("fleet token", fleet)) if have] + [f"env {k}" for k in from_env]
        out.append(Check(f"credentials:{a.name}", bool(found), ", ".join(found) or "no credentials",
                         None if found else f"hive login set-token --agent {a.name} (or for every agent: hive login "
                                            "set-token), or log in from the dashboard's agent page"))
    if not agents:
        out.append(Check("credentials", True, "no agents yet" + (" (fleet token set)" if fleet else "")))
    return out


def check_sandbox(env: dict[str, str]) -> list[Check]:
    kind = config.SANDBOX.get(env)
    if kind == "none":
        box = Check("sandbox", config.ALLOW_UNCONFINED.get(env) == "1", "HIVE_SANDBOX=none: agents run unconfined",
                    "unset HIVE_SANDBOX (bubblewrap), or set HIVE_ALLOW_UNCONFINED=1 if that is really meant",
                    warn=True)
    else:
        binary = config.BWRAP.get(env) or shutil.which("bwrap")
        err = bwrap_error(binary)
        box = Check("sandbox", err is None, err or f"bubblewrap confines ({binary})",
                    None if err is None else FIX_BWRAP)
    cgroup = config.SANDBOX_CGROUP.get(env)
    parent = Path(cgroup) if cgroup else CGROUP_ROOT
    v2 = (CGROUP_ROOT / "cgroup.controllers").exists()
    where = parent if v2 else CGROUP_ROOT / "pids"
    writable = where.is_dir() and os.access(where, os.W_OK)
    limits = Check("cgroup_limits", writable, f"cgroup {'v2' if v2 else 'v1'} at {where}: "
                   + ("the harness can make per-agent limits" if writable else "not writable: no pids/memory limits"),
                   None if writable else "run the harness as root, or delegate a cgroup v2 subtree to it "
                                         "(systemd Delegate=yes) and set HIVE_SANDBOX_CGROUP", warn=True)
    return [box, limits]


async def _nats_ok(url: str) -> str | None:
    from hivewire.nats_transport import NatsTransport

    try:
        t = await asyncio.wait_for(NatsTransport.connect(url, name="hive-doctor", forever=False), 5.0)
    except Exception as exc:
        return str(exc) or type(exc).__name__
    await t.close()
    return None


def check_nats(settings: Settings) -> Check:
    from hivewire.runner import resolve_nats_url

    url = resolve_nats_url(settings)
    err = asyncio.run(_nats_ok(url))
    return Check("nats", err is None, f"{url}: " + ("reachable" if err is None else f"not reachable ({err})"),
                 None if err is None else "start the hive (hive up), or point HIVE_NATS_URL at its NATS server")


def check_disk(home: Path) -> Check:
    where = home if home.exists() else home.parent
    try:
        free = shutil.disk_usage(where).free
    except OSError as exc:
        return Check("disk", False, f"{where}: {exc}", "create HIVE_HOME's parent directory")
    ok = free >= MIN_FREE_BYTES
    return Check("disk", ok, f"{free / 2**30:.1f} GiB free at {where}",
                 None if ok else "free space there (old sessions, backups/), or move HIVE_HOME")


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(settings: Settings, nats_up: bool) -> list[Check]:
    host, _, port = settings.dashboard_addr.rpartition(":")
    wanted = [("dashboard", host or "127.0.0.1", int(port or 8000))]
    if not nats_up:
        wanted.append(("nats", "127.0.0.1", 4222))
    out = []
    for what, h, p in wanted:
        free = _port_free(h, p)
        out.append(Check(f"port:{what}", free, f"{h}:{p} " + ("free" if free else "in use"),
                         None if free else f"stop what holds {h}:{p}; hive up picks another free port and says "
                                           "which", warn=True))
    return out


def run_checks(settings: Settings, env: dict[str, str] | None = None) -> list[Check]:
    e = dict(os.environ if env is None else env)
    checks = [check_cli(), *check_credentials(settings.home, e), *check_sandbox(e)]
    nats = check_nats(settings)
    checks += [nats, check_disk(settings.home), *check_ports(settings, nats.ok)]
    return checks
