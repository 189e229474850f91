"""Where NATS auth lives under HIVE_HOME (the layout in hivewire.natsauth)."""

from __future__ import annotations

from pathlib import Path


def auth_dir(home: Path) -> Path:
    return Path(home) / "nats"


def creds_path(home: Path, user: str) -> Path:
    return auth_dir(home) / "creds" / f"{user}.env"


def config_path(home: Path) -> Path:
    return auth_dir(home) / "nats-server.conf"


def pid_path(home: Path) -> Path:
    return Path(home) / "run" / "nats.pid"
