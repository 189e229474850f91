"""The users under `HIVE_HOME/nats/` (users.json, the source of truth) and the files
rendered from it, every one 0600 and written atomically under a lock: create them,
issue and revoke an agent's user, and what `hive up` needs to run NATS with auth on."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hivewire.names import MANAGER
from hivewire.natsauth.paths import auth_dir, config_path, creds_path, pid_path
from hivewire.natsauth.policy import OPERATOR_USER, SERVICES, agent_user, service_user
from hivewire.natsauth.reload import check_config, reload_server
from hivewire.natsauth.render import ClusterNode, creds_text, render_auth, render_server_config


def enabled(home: Path) -> bool:
    """Auth is on for this HIVE_HOME once `hive nats-config` (or prepare_auth) ran."""
    return (auth_dir(home) / "users.json").exists()


def write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(home: Path) -> Iterator[None]:
    d = auth_dir(home)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(d, 0o700)
    fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def load_users(home: Path) -> dict[str, dict[str, str]]:
    p = auth_dir(home) / "users.json"
    if not p.exists():
        return {}
    data: dict[str, dict[str, str]] = json.loads(p.read_text())
    return data


def write_cluster_config(home: Path, node: ClusterNode, store_dir: Path) -> Path:
    """`nats/<node>.conf` beside auth.conf: one node of a cluster, same users everywhere.

    Copy HIVE_HOME/nats (users.json, auth.conf, creds) to every host so all
    nodes accept the same credentials; re-run after issuing/revoking users.
    """
    path = auth_dir(home) / f"{node.name}.conf"
    write_secret(path, render_server_config(home, cluster=node, store_dir=store_dir))
    return path


def render_all(home: Path, users: dict[str, dict[str, str]]) -> None:
    d = auth_dir(home)
    write_secret(d / "users.json", json.dumps(users, indent=2, sort_keys=True) + "\n")
    write_secret(d / "auth.conf", render_auth(users))
    if not config_path(home).exists():
        write_secret(config_path(home), render_server_config(home))
    wanted = {f"{u}.env" for u in users}
    for u, rec in users.items():
        write_secret(creds_path(home, u), creds_text(u, rec["password"]))
    for stale in (d / "creds").glob("*.env"):
        if stale.name not in wanted:
            stale.unlink()


def new_password() -> str:
    return secrets.token_urlsafe(24)


def generate(home: Path, *, agents: tuple[str, ...] = (MANAGER,), rotate: bool = False) -> Path:
    """Create (or refresh) users for every service, the operator and `agents`.

    Existing passwords are kept unless `rotate`. Returns the server config path.
    """
    with locked(home):
        users = load_users(home)
        wanted = [OPERATOR_USER, *(service_user(s) for s in SERVICES), *(agent_user(a) for a in agents)]
        for u in {*wanted, *users}:
            if rotate or u not in users:
                users[u] = {"password": new_password()}
        render_all(home, users)
    pid_path(home).parent.mkdir(parents=True, exist_ok=True)  # nats-server writes its pid file there
    return config_path(home)


def issue_agent(home: Path, name: str, *, reload: bool = True) -> dict[str, str]:
    """At spawn: make sure `name` has a NATS user; returns the harness's env.

    Empty when auth is off for this HIVE_HOME (nothing to do).
    """
    if not enabled(home):
        return {}
    user = agent_user(name)
    with locked(home):
        users = load_users(home)
        changed = user not in users
        if changed:
            users[user] = {"password": new_password()}
            render_all(home, users)
    if changed and reload:
        reload_server(home)
    return {"HIVE_NATS_CREDS": str(creds_path(home, user))}


def revoke_agent(home: Path, name: str, *, reload: bool = True) -> bool:
    """At destroy: drop the agent's user; the reload disconnects it. True if it existed."""
    if not enabled(home):
        return False
    user = agent_user(name)
    with locked(home):
        users = load_users(home)
        if user not in users:
            return False
        del users[user]
        render_all(home, users)
    if reload:
        reload_server(home)
    return True


def users(home: Path) -> list[str]:
    return sorted(load_users(home))


# --- what `hive up` needs ---------------------------------------------------
@dataclass
class AuthSetup:
    """The result of `prepare_auth`: the config to start nats-server with, and
    the extra env of every child `hive up` starts."""

    config: Path
    pid_file: Path
    env: dict[str, dict[str, str]] = field(default_factory=dict)

    def env_for(self, short: str, agent: str | None = None) -> dict[str, str]:
        """Env for service `short` (`harness` needs the agent it runs)."""
        if short == "harness":
            if not agent:
                raise ValueError("the harness runs as an agent: pass agent=")
            return {"HIVE_NATS_CREDS": str(creds_path(self.config.parent.parent, agent_user(agent)))}
        return dict(self.env[short])


def prepare_auth(settings: Any, *, agents: tuple[str, ...] = (MANAGER,)) -> AuthSetup:
    """Generate (idempotently) everything `hive up` needs to run NATS with auth on."""
    home = Path(settings.home)
    cfg = generate(home, agents=agents)
    check_config(cfg)
    env = {s: {"HIVE_NATS_CREDS": str(creds_path(home, service_user(s)))} for s in SERVICES}
    env["operator"] = {"HIVE_NATS_CREDS": str(creds_path(home, OPERATOR_USER))}
    return AuthSetup(config=cfg, pid_file=pid_path(home), env=env)
