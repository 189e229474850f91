"""The `hive` command line (typer + rich).

Core commands live here; each service adds its own (`hive send`, `hive
agents ...`) through the `hive.cli` entry point group, whose targets are
`register(app: typer.Typer) -> None` functions. So hivewire never imports a
service.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points

import structlog

from hivewire import config
from hivewire.cli import inspect, migrate, natsconfig, up  # noqa: F401  (registers commands)
from hivewire.cli.app import app
from hivewire.logs import configure_logging
from hivewire.settings import UMASK

log = structlog.get_logger("hive.cli")


def load_plugins() -> None:
    for ep in sorted(entry_points(group="hive.cli"), key=lambda e: e.name):
        try:
            ep.load()(app)
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            log.warning("cli_plugin_failed", plugin=ep.name, error=str(exc))


def main() -> None:
    # CLI output is for people: quiet, readable logs on stderr (`hive up` reconfigures).
    # HIVE_LOG_LEVEL as declared in hivewire.config, but unset means warning here
    try:
        level = config.LOG_LEVEL.get({config.LOG_LEVEL.name: "warning", **os.environ})
    except config.ConfigError as exc:
        print(f"hive: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(level, json=False)
    os.umask(UMASK)  # what the CLI writes under HIVE_HOME (nats config, migrations, restores) stays private
    load_plugins()
    app()


__all__ = ["app", "load_plugins", "main"]
