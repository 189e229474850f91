"""`hive up`: NATS (embedded unless HIVE_NATS_URL) plus every service, supervised.

NATS auth is on by default (`natsauth.prepare_auth`): the embedded
nats-server runs the generated config (one user per service, agent and the
operator) and every child gets its own credentials file. `--no-auth` runs
without. With an external server (`HIVE_NATS_URL`) auth follows
`HIVE_HOME/nats`: when `hive nats-config` has run there, the services use
those credentials (the operator must load `HIVE_HOME/nats/auth.conf` into
that server); otherwise they connect without credentials.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
import typer

from hivewire import natsauth, tls
from hivewire.cli import upready
from hivewire.cli.app import app, err_console, settings
from hivewire.logs import configure_logging
from hivewire.natsd import nats_command
from hivewire.procs import wait_port
from hivewire.settings import Settings, ensure_secret_file, secure_home
from hivewire.supervisor import ChildSpec, Supervisor

log = structlog.get_logger("hive.up")

# Services `hive up` runs. Harnesses are not among them: the deployer owns
# agent processes and spawns the `manager` agent at its start if it is absent.
SERVICES = ("broker", "deployer", "dashboard", "backup")
OPERATOR_TOKEN_ENV = "HIVE_OPERATOR_TOKEN"


def service_specs(
    s: Settings, nats_url: str, only: tuple[str, ...] = SERVICES, auth: natsauth.AuthSetup | None = None,
    *, no_auth: bool = False, extra_env: dict[str, dict[str, str]] | None = None,
) -> list[ChildSpec]:
    """One child per service; each gets its own NATS identity (`auth`), never `hive up`'s own.

    `no_auth`: HIVE_NATS_CREDS=none, so no child falls back to the operator's file.
    `extra_env`: per service, e.g. the free port that replaced a busy one (`upready.plan_ports`).
    """
    base = {"HIVE_HOME": str(s.home), "HIVE_NATS_URL": nats_url}
    base.update(dict.fromkeys(natsauth.IDENTITY_ENV, ""))  # whatever identity the operator's shell carries
    # The operator token reaches only the dashboard (the one service that checks it): the
    # deployer passes its environment on to agents. Unset, the dashboard reads operator.token.
    base[OPERATOR_TOKEN_ENV] = ""
    if no_auth:
        base["HIVE_NATS_CREDS"] = "none"
    specs = []
    for short in only:
        env = dict(base)
        if auth is not None:
            env.update(auth.env_for(short))
        env.update((extra_env or {}).get(short, {}))
        if short == "dashboard" and s.operator_token:
            env[OPERATOR_TOKEN_ENV] = s.operator_token
        specs.append(ChildSpec(short, [sys.executable, "-m", f"hive_{short}"], env))
    return specs


def _already_running(pid_file: os.PathLike[str]) -> int | None:
    try:
        pid = int(open(pid_file).read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


@app.command()
def up(
    only: str = typer.Option(",".join(SERVICES), help="Comma-separated services to run."),
    stop_timeout: float = typer.Option(8.0, help="Seconds to wait for a clean stop before SIGKILL."),
    nats_port: int = typer.Option(4222, help="Port of the embedded nats-server (0: any free port)."),
    no_auth: bool = typer.Option(False, "--no-auth", help="Run NATS without users and permissions."),
    nats_monitor_port: int = typer.Option(
        0, help="Monitoring (HTTP: /varz, /connz) port of the embedded nats-server on its host; 0: off."
    ),
    nats_listen: str = typer.Option(
        "", help="HOST[:PORT] the embedded nats-server listens on, e.g. 0.0.0.0:4222 or a LAN address, so agent "
                 "hosts reach it (issue 26); default: 127.0.0.1 and --nats-port."
    ),
) -> None:
    """Start NATS and every service; Ctrl-C stops them all.

    A service that dies is restarted; SIGTERM or Ctrl-C stops everything.
    """
    run_up(settings(), only, stop_timeout, nats_port, no_auth=no_auth, monitor_port=nats_monitor_port,
           nats_listen=nats_listen)


def parse_listen(addr: str, port: int) -> tuple[str, int, str]:
    """`--nats-listen HOST[:PORT]` -> (bind host, port, the host local clients dial)."""
    addr = addr.strip()
    if not addr:
        return "127.0.0.1", port, "127.0.0.1"
    host, sep, raw = addr.rpartition(":") if not addr.endswith("]") else (addr, "", "")
    if not sep:
        host, raw = addr, ""
    host = host.strip("[]")
    if not host or (raw and not raw.isdigit()) or any(c.isspace() or c == "/" for c in host):
        raise ValueError(f"--nats-listen wants HOST[:PORT], got {addr!r}")
    wildcard = host in ("0.0.0.0", "::")
    return host, int(raw) if raw else port, ("127.0.0.1" if wildcard else host)


@dataclass
class UpHooks:
    """What a command built on `hive up` (`hive demo`) adds to it.

    `env`: per service, extra environment. `on_ready(ports, log_dir)`: called once the
    dashboard answers; the lines it returns are printed instead of the ready block.
    `on_stop()`: called first when the hive stops."""

    env: dict[str, dict[str, str]] = field(default_factory=dict)
    on_ready: Callable[[upready.Ports, Path], Awaitable[list[str]]] | None = None
    on_stop: Callable[[], Awaitable[None]] | None = None


def run_up(s: Settings, only: str = ",".join(SERVICES), stop_timeout: float = 8.0, nats_port: int = 4222, *,
           no_auth: bool = False, monitor_port: int = 0, hooks: UpHooks | None = None,
           nats_listen: str = "") -> None:
    """`hive up`'s body: start, print where Hive is, run until SIGTERM/SIGINT, stop everything."""
    try:
        listen = parse_listen(nats_listen, nats_port)
    except ValueError as exc:
        err_console.print(f"[red]error[/red] {exc}")
        raise typer.Exit(2) from None
    if nats_listen and s.nats_url:
        err_console.print("[red]error[/red] --nats-listen is for the embedded nats-server; HIVE_NATS_URL names "
                          "an external one")
        raise typer.Exit(2)
    secure_home(s.home)  # umask 077 (inherited by nats-server and every service) and HIVE_HOME 0700
    chosen = tuple(x.strip() for x in only.split(",") if x.strip())
    unknown = [x for x in chosen if x not in SERVICES]
    if unknown:
        err_console.print(f"[red]error[/red] unknown service(s): {', '.join(unknown)}; known: {', '.join(SERVICES)}")
        raise typer.Exit(2)
    s.run_dir.mkdir(parents=True, exist_ok=True)
    pid_file = s.run_dir / "hive-up.pid"
    other = _already_running(pid_file)
    if other and other != os.getpid():
        err_console.print(f"[red]error[/red] hive up is already running for {s.home} (pid {other})")
        raise typer.Exit(2)
    pid_file.write_text(f"{os.getpid()}\n")
    log_dir = s.run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    # The console is for the operator: hive up's own JSON log lines go to a file, like every service's.
    with open(log_dir / "hive-up.log", "a", buffering=1) as log_file:
        configure_logging(s.log_level, service="hive-up", json=True, stream=log_file)
        try:
            asyncio.run(_up(s, chosen, stop_timeout, listen[1], no_auth=no_auth, monitor_port=monitor_port,
                            hooks=hooks, listen=listen))
        finally:
            pid_file.unlink(missing_ok=True)


def _auth(s: Settings, no_auth: bool) -> tuple[natsauth.AuthSetup | None, str]:
    """The auth setup for this run and a line saying what it is."""
    if no_auth:
        return None, "nats auth: OFF (--no-auth)"
    if s.nats_url and not natsauth.enabled(s.home):
        return None, (f"nats auth: off (external NATS; no {natsauth.auth_dir(s.home)}/users.json: run "
                      "`hive nats-config` and load its auth.conf into your server to turn it on)")
    auth = natsauth.prepare_auth(s)  # idempotent: passwords kept, new users added, config checked
    if s.nats_url:
        return auth, (f"nats auth: on (external NATS: it must include {natsauth.auth_dir(s.home)}/auth.conf; "
                      "reload it after agents are spawned or destroyed)")
    return auth, f"nats auth: on (users and credentials in {natsauth.auth_dir(s.home)})"


async def _up(
    s: Settings, chosen: tuple[str, ...], stop_timeout: float, nats_port: int, *, no_auth: bool = False,
    monitor_port: int = 0, hooks: UpHooks | None = None, listen: tuple[str, int, str] | None = None,
) -> None:
    specs: list[ChildSpec] = []
    bind, _, local = listen or ("127.0.0.1", nats_port, "127.0.0.1")
    url_file = s.run_dir / "nats.url"
    auth, auth_line = _auth(s, no_auth)
    embedded_pid = natsauth.pid_path(s.home)
    ports = upready.plan_ports(s, chosen, nats_port)  # every port checked before anything is printed
    for short, extra in (hooks.env if hooks else {}).items():
        ports.env.setdefault(short, {}).update(extra)
    port = ports.nats
    if s.nats_url:
        nats_url = s.nats_url
    else:
        nats_url = f"nats://{local}:{port}"
        # Ours to own: a stale pid file must not lead a reload (agent issued/revoked) to another process.
        embedded_pid.unlink(missing_ok=True)
        server_config = auth.config if auth else None
        if not tls.is_loopback(bind):
            # Beyond loopback every client, local ones included, must speak TLS (nats-server cannot
            # make it optional per connection); they trust HIVE_HOME/tls/ca.pem (hivewire.tls).
            try:
                cert = tls.ensure(s.home, tls.core_sans([bind]))
            except tls.TlsError as exc:
                err_console.print(f"[red]error[/red] {exc}")
                raise typer.Exit(2) from None
            server_config = tls.nats_tls_config(s.home, cert, server_config)
            ports.notes.append(f"nats TLS: on (CA {cert.ca}, sha256 {cert.sha256})")
        cmd = nats_command(s.run_dir / "nats", port, host=bind, config=server_config)
        if bind != "127.0.0.1":  # agent hosts join with the port the server really has
            ports.env.setdefault("deployer", {})["HIVE_HOSTS_NATS_PORT"] = str(port)
            ports.notes.append(f"nats listens on {bind}:{port} (agent hosts connect there; auth "
                               f"{'OFF: anyone who reaches it may publish' if auth is None else 'on'})")
        if monitor_port:
            cmd += ["-m", str(monitor_port)]
        specs.append(ChildSpec("nats", cmd))
    if not s.operator_token:
        ensure_secret_file(s.home / "operator.token")
    specs += service_specs(s, nats_url, chosen, auth, no_auth=no_auth, extra_env=ports.env)
    sup = Supervisor(specs, s.run_dir / "logs")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    upready.say(f"starting Hive in {s.home}: {', '.join(spec.name for spec in specs)}")
    for note in ports.notes:
        upready.say(note)
    upready.say(auth_line)
    await sup.start()
    if port and not await asyncio.to_thread(wait_port, local, port, 10.0):
        err_console.print("[red]error[/red] embedded nats-server did not start; see logs in " + str(sup.log_dir))
    if port:
        url_file.write_text(nats_url + "\n")
    try:
        if ports.dashboard and not await upready.wait_healthz(ports.dashboard_url, 120.0, stop):
            if not stop.is_set():
                err_console.print(f"[red]error[/red] the dashboard did not answer {ports.dashboard_url}healthz; "
                                  f"see {sup.log_dir / 'dashboard.log'}")
        if not stop.is_set():
            if hooks and hooks.on_ready:
                lines = await hooks.on_ready(ports, sup.log_dir)
            else:
                lines = upready.ready_block(s, ports, sup.log_dir, bool(s.operator_token))
            for line in lines:
                upready.say(line)
        await stop.wait()
    finally:
        upready.say("stopping ...")
        if hooks and hooks.on_stop:
            await hooks.on_stop()
        await sup.stop(stop_timeout)
        if port:
            url_file.unlink(missing_ok=True)
            embedded_pid.unlink(missing_ok=True)
        upready.say("stopped")
