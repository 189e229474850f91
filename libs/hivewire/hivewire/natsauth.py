"""NATS security: users, permissions, credentials files, the server config.

Layout under `HIVE_HOME/nats/` (every file 0600, the directory 0700):

    users.json           the source of truth: user -> {password, role, agent?}
    auth.conf            the `accounts { HIVE { ... } }` block rendered from it
    nats-server.conf     a server config that includes auth.conf (pid_file,
                         JetStream); `nats-server -c` takes it
    creds/<user>.env     one credentials file per user, in env-file syntax
                         (HIVE_NATS_USER, HIVE_NATS_PASSWORD,
                         HIVE_NATS_INBOX_PREFIX) so systemd `EnvironmentFile=`
                         and compose `env_file:` read it as is

Users: `svc_<service>` for broker, deployer, dashboard and backup,
`agent_<name>` for each agent (its harness and MCP bridge), and `operator`
(the CLI and the nats CLI). Every user has its own inbox prefix
`_INBOX_<user>` and may subscribe only to its own inbox, so nobody reads
another user's replies. An agent's or the operator's replies to requests it
serves are allowed by `allow_responses` only; services may also publish to
every user's inbox, because a config reload (each agent issued or revoked)
forgets the reply rights `allow_responses` gave for requests in flight.

A process picks its credentials with `HIVE_NATS_CREDS=<file>` (this env-file
format, or a NATS JWT `.creds` file), or `HIVE_NATS_USER` +
`HIVE_NATS_PASSWORD` (+ `HIVE_NATS_INBOX_PREFIX`, default `_INBOX_<user>`);
`connect_nats` honours them (see `resolve_credentials`).

The deployer calls `issue_agent(home, name)` at spawn (returns the env to give
the harness) and `revoke_agent(home, name)` at destroy; both re-render the
config and ask the running nats-server to reload it (SIGHUP through its pid
file), which disconnects a revoked user at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hivewire import config, subjects
from hivewire.names import MANAGER, validate_agent_name
from hivewire.wire import ops
from hivewire.wire.op import Caller, Service

ACCOUNT = "HIVE"
SERVICES = ("broker", "deployer", "dashboard", "backup")
OPERATOR_USER = "operator"
# The manager's tools that go straight to the deployer (the contract's ops `manager` may call).
MANAGER_DEPLOYER_VERBS = tuple(o.name for o in ops.for_service(Service.DEPLOYER) if Caller.MANAGER in o.callers)
INBOX_ROOT = "_INBOX"
# The env vars that carry a process's NATS identity (`resolve_credentials`): a
# parent must not pass its own down to a child that runs as someone else.
IDENTITY_ENV = ("HIVE_NATS_CREDS", "HIVE_NATS_USER", "HIVE_NATS_PASSWORD", "HIVE_NATS_INBOX_PREFIX")


# --- who may do what --------------------------------------------------------
def service_user(short: str) -> str:
    if short not in SERVICES:
        raise ValueError(f"unknown service {short!r}; known: {', '.join(SERVICES)}")
    return f"svc_{short}"


def agent_user(name: str) -> str:
    return f"agent_{validate_agent_name(name, allow_reserved=True)}"


def inbox_prefix(user: str) -> str:
    """`_INBOX_<user>`: agent names have no `_`, so prefixes never collide."""
    return f"{INBOX_ROOT}_{user}"


def _perms(pub: list[str], sub: list[str], *, pub_deny: list[str] | None = None) -> dict[str, Any]:
    p: dict[str, Any] = {
        "publish": {"allow": pub},
        "subscribe": {"allow": sub},
        "allow_responses": True,  # reply to requests it serves, nothing more
    }
    if pub_deny:
        p["publish"]["deny"] = pub_deny
    return p


def agent_permissions(name: str) -> dict[str, Any]:
    """An agent speaks only under its own token and reads only its own inbox: what the
    contract lets it call as `Caller.AGENT` (and `Caller.MANAGER` for `manager`), and
    serve and publish as its harness (hivewire.wire.ops)."""
    name = validate_agent_name(name, allow_reserved=True)
    user = agent_user(name)
    roles = {Caller.AGENT, Caller.MANAGER} if name == MANAGER else {Caller.AGENT}
    pub, sub = ops.rights(roles, Service.HARNESS, name)
    # Under `$SRV` only its own harness's discovery subjects (`$SRV.<verb>.hive-harness.<name>`):
    # whoever may subscribe to the `$SRV.PING`/`$SRV.INFO` broadcasts can answer them as
    # any service (a fake `hive-broker` in `hive status` and `nats micro ls`).
    sub = [*sub, subjects.harness_srv_pattern(name), f"{inbox_prefix(user)}.>"]
    return _perms(pub, sub, pub_deny=["hive.operator.>", "$JS.>", "$SYS.>", "$O.>", "$KV.>"])


def service_permissions(short: str, reply_to: tuple[str, ...] = ()) -> dict[str, Any]:
    """A service's rights; `reply_to`: every user's inbox prefix (see `render_auth`)."""
    p = _service_permissions(short)
    # A reload (every issue/revoke of an agent) resets the replies `allow_responses`
    # granted for requests in flight, so a service's reply to a request it received just
    # before would be refused and its caller would wait out its timeout (a spawn, every
    # agent's long-poll recv). Services may therefore publish to every user's inbox; that
    # lets no one read anyone else's replies (subscribe rights are unchanged).
    p["publish"]["allow"] = [*p["publish"]["allow"], *(f"{prefix}.>" for prefix in reply_to)]
    return p


# What a service may do beyond the contract's ops (hivewire.wire.ops): NATS's own subjects.
# (publish, subscribe); every service also subscribes to `$SRV.>` (micro discovery) and its inbox.
_SERVICE_EXTRAS: dict[str, tuple[list[str], list[str]]] = {
    # `$JS.API.>`/`$JS.ACK.>`: the cost ledger (hive_broker.ledger) keeps the turn-row stream and its
    # durable consumer, fetches from it and acks what it committed. The deployer and ctl.state
    # rights are not used by today's broker; granted since NATS auth landed and tests/ops asserts them.
    "broker": (["$JS.API.>", "$JS.ACK.>", "hive.deployer.list", "hive.deployer.spawn", "hive.agent.*.ctl.state"],
               []),
    # `$SRV.*.hive-harness.*`: it relays discovery to the harnesses it runs (hive_deployer.microrelay)
    "deployer": ([f"{subjects.SRV}.*.{subjects.HARNESS_SERVICE}.*"], []),
    # The operator's console: micro discovery, and read-only views of all of hive.>
    "dashboard": (["$SRV.>"], ["hive.>"]),
    "backup": (["$JS.>", "$O.>", "$KV.>"], []),
}


def _service_permissions(short: str) -> dict[str, Any]:
    """The contract's rights of `svc_<short>` (the dashboard also calls as the operator) plus `_SERVICE_EXTRAS`."""
    inbox = f"{inbox_prefix(service_user(short))}.>"
    roles = {Caller(short), Caller.OPERATOR} if short == "dashboard" else {Caller(short)}
    pub, sub = ops.rights(roles, Service(f"hive-{short}"))
    extra_pub, extra_sub = _SERVICE_EXTRAS[short]
    return _perms([*pub, *extra_pub], [*sub, *extra_sub, "$SRV.>", inbox])


def operator_permissions() -> dict[str, Any]:
    """The person at the CLI: every request, `hive tap`, `nats micro`, JetStream admin."""
    return _perms(["hive.>", "$SRV.>", "$JS.API.>", "$O.>"], ["hive.>", "$SRV.>", f"{inbox_prefix(OPERATOR_USER)}.>"])


def permissions_for(user: str, reply_to: tuple[str, ...] = ()) -> dict[str, Any]:
    if user == OPERATOR_USER:
        return operator_permissions()
    if user.startswith("svc_"):
        return service_permissions(user[4:], reply_to)
    if user.startswith("agent_"):
        return agent_permissions(user[6:])
    if user.startswith("host_"):  # an agent host's hive-agenthost (issue 26)
        from hivewire.hostauth import host_permissions

        return host_permissions(user[5:])
    raise ValueError(f"unknown NATS user {user!r}")


# --- files ------------------------------------------------------------------
def auth_dir(home: Path) -> Path:
    return Path(home) / "nats"


def creds_path(home: Path, user: str) -> Path:
    return auth_dir(home) / "creds" / f"{user}.env"


def config_path(home: Path) -> Path:
    return auth_dir(home) / "nats-server.conf"


def pid_path(home: Path) -> Path:
    return Path(home) / "run" / "nats.pid"


def enabled(home: Path) -> bool:
    """Auth is on for this HIVE_HOME once `hive nats-config` (or prepare_auth) ran."""
    return (auth_dir(home) / "users.json").exists()


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    d = auth_dir(home)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(d, 0o700)
    fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _load(home: Path) -> dict[str, dict[str, str]]:
    p = auth_dir(home) / "users.json"
    if not p.exists():
        return {}
    data: dict[str, dict[str, str]] = json.loads(p.read_text())
    return data


def render_auth(users: Mapping[str, Mapping[str, str]]) -> str:
    """The accounts block (JSON values are valid nats-server config syntax)."""
    inboxes = tuple(inbox_prefix(u) for u in sorted(users))
    entries = [
        {"user": u, "password": users[u]["password"], "permissions": permissions_for(u, inboxes)}
        for u in sorted(users)
    ]
    body = json.dumps(entries, indent=2)
    return (
        "# Generated by `hive nats-config` from users.json; do not edit (secret, 0600).\n"
        f"accounts: {{\n  {ACCOUNT}: {{\n    jetstream: enabled\n    users: {body}\n  }}\n}}\n"
    )


def render_server_config(
    home: Path,
    *,
    server_name: str = "hive",
    cluster: ClusterNode | None = None,
    store_dir: Path | None = None,
) -> str:
    """A nats-server config including auth.conf; CLI flags still override it."""
    pid = pid_path(home) if cluster is None else pid_path(home).with_name(f"nats-{cluster.name}.pid")
    lines = [
        "# Generated by `hive nats-config`.",
        f"server_name: {json.dumps(server_name if cluster is None else cluster.name)}",
        f"pid_file: {json.dumps(str(pid))}",
    ]
    if store_dir is not None:  # else JetStream comes from the command line (`-js -sd`, as natsd does)
        lines.append(f"jetstream: {{ store_dir: {json.dumps(str(store_dir))} }}")
    if cluster is not None:
        lines += [
            f"listen: {json.dumps(f'{cluster.host}:{cluster.client_port}')}",
            "cluster: {",
            f"  name: {json.dumps(cluster.cluster)}",
            f"  listen: {json.dumps(f'{cluster.host}:{cluster.cluster_port}')}",
            f"  routes: {json.dumps(list(cluster.routes))}",
            "}",
        ]
    lines.append("include ./auth.conf")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ClusterNode:
    """One node of a NATS cluster (see docs/operations.md, "Clustering")."""

    name: str  # unique server name (JetStream needs one per node)
    host: str
    client_port: int
    cluster_port: int
    routes: tuple[str, ...]  # nats-route://host:port of every node (its own is ignored)
    cluster: str = "hive"


def write_cluster_config(home: Path, node: ClusterNode, store_dir: Path) -> Path:
    """`nats/<node>.conf` beside auth.conf: one node of a cluster, same users everywhere.

    Copy HIVE_HOME/nats (users.json, auth.conf, creds) to every host so all
    nodes accept the same credentials; re-run after issuing/revoking users.
    """
    path = auth_dir(home) / f"{node.name}.conf"
    _write_secret(path, render_server_config(home, cluster=node, store_dir=store_dir))
    return path


def creds_text(user: str, password: str) -> str:
    return (
        f"# Hive NATS credentials of {user} (secret)\n"
        f"HIVE_NATS_USER={user}\nHIVE_NATS_PASSWORD={password}\nHIVE_NATS_INBOX_PREFIX={inbox_prefix(user)}\n"
    )


def _render_all(home: Path, users: dict[str, dict[str, str]]) -> None:
    d = auth_dir(home)
    _write_secret(d / "users.json", json.dumps(users, indent=2, sort_keys=True) + "\n")
    _write_secret(d / "auth.conf", render_auth(users))
    if not config_path(home).exists():
        _write_secret(config_path(home), render_server_config(home))
    wanted = {f"{u}.env" for u in users}
    for u, rec in users.items():
        _write_secret(creds_path(home, u), creds_text(u, rec["password"]))
    for stale in (d / "creds").glob("*.env"):
        if stale.name not in wanted:
            stale.unlink()


def _new_password() -> str:
    return secrets.token_urlsafe(24)


def generate(home: Path, *, agents: tuple[str, ...] = (MANAGER,), rotate: bool = False) -> Path:
    """Create (or refresh) users for every service, the operator and `agents`.

    Existing passwords are kept unless `rotate`. Returns the server config path.
    """
    with _locked(home):
        users = _load(home)
        wanted = [OPERATOR_USER, *(service_user(s) for s in SERVICES), *(agent_user(a) for a in agents)]
        for u in {*wanted, *users}:
            if rotate or u not in users:
                users[u] = {"password": _new_password()}
        _render_all(home, users)
    pid_path(home).parent.mkdir(parents=True, exist_ok=True)  # nats-server writes its pid file there
    return config_path(home)


def issue_agent(home: Path, name: str, *, reload: bool = True) -> dict[str, str]:
    """At spawn: make sure `name` has a NATS user; returns the harness's env.

    Empty when auth is off for this HIVE_HOME (nothing to do).
    """
    if not enabled(home):
        return {}
    user = agent_user(name)
    with _locked(home):
        users = _load(home)
        changed = user not in users
        if changed:
            users[user] = {"password": _new_password()}
            _render_all(home, users)
    if changed and reload:
        reload_server(home)
    return {"HIVE_NATS_CREDS": str(creds_path(home, user))}


def revoke_agent(home: Path, name: str, *, reload: bool = True) -> bool:
    """At destroy: drop the agent's user; the reload disconnects it. True if it existed."""
    if not enabled(home):
        return False
    user = agent_user(name)
    with _locked(home):
        users = _load(home)
        if user not in users:
            return False
        del users[user]
        _render_all(home, users)
    if reload:
        reload_server(home)
    return True


def users(home: Path) -> list[str]:
    return sorted(_load(home))


def reload_server(home: Path, pid_file: Path | None = None) -> bool:
    """SIGHUP the nats-server whose pid file is given (default run/nats.pid).

    False when no server runs (the next start reads the new config anyway).
    Where nats-server runs in another pid namespace, use
    `nats-server --signal reload=<pid file>` there instead.
    """
    p = pid_file or pid_path(home)
    try:
        pid = int(p.read_text().strip())
        if not _is_nats_server(pid):  # a stale pid file (kill -9, reboot) names someone else now
            return False
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        return False
    return True


def _is_nats_server(pid: int) -> bool:
    """True unless /proc shows that `pid` is not a nats-server (no /proc: trust the pid file)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    try:
        argv0 = (proc / str(pid) / "cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return False
    return "nats-server" in Path(argv0.decode(errors="replace")).name


def check_config(config: Path) -> str:
    """`nats-server -t -c config`: raises ValueError with its output if invalid."""
    from hivewire.natsd import nats_server_binary

    r = subprocess.run([nats_server_binary(), "-t", "-c", str(config)], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise ValueError(f"nats-server rejected {config}: {r.stdout}{r.stderr}")
    return r.stdout + r.stderr


# --- the client side --------------------------------------------------------
@dataclass
class Credentials:
    user: str | None = None
    password: str | None = None
    inbox_prefix: str | None = None
    jwt_creds_file: str | None = None  # a NATS (decentralized auth) .creds file

    def connect_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if self.jwt_creds_file:
            opts["user_credentials"] = self.jwt_creds_file
        if self.user:
            opts["user"] = self.user
            opts["password"] = self.password or ""
        if self.inbox_prefix:
            opts["inbox_prefix"] = self.inbox_prefix
        return opts


def parse_env_file(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, _, v = line.partition("=")
        out[k.strip().removeprefix("export ").strip()] = v.strip().strip('"').strip("'")
    return out


def resolve_credentials(env: Mapping[str, str] | None = None) -> Credentials | None:
    """How a process finds its NATS identity, first match wins:

    1. `HIVE_NATS_CREDS=<file>`: a creds file written here, or a NATS JWT
       `.creds` file (`none` disables every fallback);
    2. `HIVE_NATS_USER` + `HIVE_NATS_PASSWORD`;
    3. the operator's file `$HIVE_HOME/nats/creds/operator.env` when it exists
       and is readable (whoever can read it is the operator anyway), so `hive
       ...` commands work against an auth-on `hive up` without extra setup;
       never for an agent's process (`HIVE_AGENT` set).
    `HIVE_NATS_INBOX_PREFIX` overrides the inbox prefix (default `_INBOX_<user>`).
    """
    e = os.environ if env is None else env
    path = config.NATS_CREDS.get(e) or ""
    if path.lower() == "none":
        return None
    own_prefix = config.NATS_INBOX_PREFIX.get(e)  # the environment's, over a file's
    values: Mapping[str, str] = e  # the file read below, in the same variables
    if path:
        text = Path(path).expanduser().read_text()
        if "BEGIN NATS USER JWT" in text:
            return Credentials(jwt_creds_file=path, inbox_prefix=own_prefix)
        values = parse_env_file(text)
    elif not config.NATS_USER.get(e) and not config.AGENT.get(e):  # an agent never falls back
        op = creds_path(config.home(e), OPERATOR_USER)
        if not os.access(op, os.R_OK):
            return None
        values = parse_env_file(op.read_text())
    user = config.NATS_USER.get(values)
    if not user:
        return None
    return Credentials(
        user=user,
        password=config.NATS_PASSWORD.get(values) or "",
        inbox_prefix=own_prefix or config.NATS_INBOX_PREFIX.get(values) or inbox_prefix(user),
    )


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
