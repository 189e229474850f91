"""Settings from environment variables (each declared in hivewire.config)."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

import msgspec
import structlog

from hivewire import config

log = structlog.get_logger("hivewire.settings")

DEFAULT_METRICS_PORTS = {"broker": 9411, "deployer": 9412, "backup": 9413, "harness": 0, "dashboard": 0}


class Settings(msgspec.Struct, kw_only=True):
    home: Path
    nats_url: str | None = None
    dashboard_addr: str = "127.0.0.1:8000"
    operator_token: str | None = None
    agent_cmd: str = "claude"
    events_db: str | None = None
    model_file: str | None = None
    context_window: int | None = None
    metrics_addr: str | None = None
    log_level: str = "info"
    # NATS identity (hivewire.natsauth): a creds file, or user (+ HIVE_NATS_PASSWORD,
    # read only at connect time so it is never kept in a struct), and inbox prefix.
    nats_creds: str | None = None
    nats_user: str | None = None
    nats_inbox_prefix: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The shared variables (declared in hivewire.config); a bad value raises ConfigError."""
        e = os.environ if env is None else env
        return cls(
            home=config.home(e),
            nats_url=config.NATS_URL.get(e),
            dashboard_addr=config.DASHBOARD_ADDR.get(e),
            operator_token=config.OPERATOR_TOKEN.get(e),
            agent_cmd=config.AGENT_CMD.get(e),
            events_db=config.EVENTS_DB.get(e),
            model_file=config.MODEL_FILE.get(e),
            context_window=config.CONTEXT_WINDOW.get(e),
            metrics_addr=config.METRICS_ADDR.get(e),
            log_level=config.LOG_LEVEL.get(e),
            nats_creds=config.NATS_CREDS.get(e),
            nats_user=config.NATS_USER.get(e),
            nats_inbox_prefix=config.NATS_INBOX_PREFIX.get(e),
        )

    # --- the file layout under HIVE_HOME -------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def broker_db(self) -> Path:
        return self.home / "broker.sqlite"

    @property
    def broker_search_db(self) -> Path:
        """The broker's full-text index of message bodies: derived from broker.sqlite,
        rebuilt from it when lost, so backups leave it out."""
        return self.home / "broker-search.sqlite"

    def agent_dir(self, name: str) -> Path:
        from hivewire.names import validate_agent_name

        return self.home / "agents" / validate_agent_name(name, allow_reserved=True)

    @property
    def nats_dir(self) -> Path:
        """NATS auth config and per-user credentials (hivewire.natsauth)."""
        return self.home / "nats"

    @property
    def nats_servers(self) -> str:
        return self.nats_url or "nats://127.0.0.1:4222"

    def metrics_bind(self, service: str) -> tuple[str, int]:
        """`HIVE_METRICS_ADDR` (host:port) or the service's default port."""
        if self.metrics_addr:
            host, _, port = self.metrics_addr.rpartition(":")
            return host or "127.0.0.1", int(port)
        return "127.0.0.1", DEFAULT_METRICS_PORTS.get(service, 0)


HOME_MODE = 0o700
UMASK = 0o077


def secure_home(home: Path) -> Path:
    """What every Hive process does first: umask 077 and a private HIVE_HOME.

    Everything the process (and any child: nats-server, agents) creates after
    this is 0600/0700: sqlite files and their -wal/-shm, logs, tokens,
    credentials. `home` is created 0700; an existing one that group or others
    may enter is tightened to 0700 (logged). Returns `home`. A home this process
    cannot chmod (not its owner) is logged and left as is.
    """
    os.umask(UMASK)
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True, mode=HOME_MODE)
    try:
        mode = stat.S_IMODE(home.stat().st_mode)
        if mode & 0o077:
            os.chmod(home, HOME_MODE)
            log.warning("hive_home_tightened", home=str(home), mode=oct(mode), now=oct(HOME_MODE))
    except OSError as exc:
        log.error("hive_home_not_private", home=str(home), error=str(exc))
    return home


def ensure_secret_file(path: Path, nbytes: int = 32) -> str:
    """Read a secret from `path`, creating it (0600) with a random token if absent."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token
