"""The `hive` command line (typer + rich).

Sub-commands live in one module per domain; each registers on `app`.
"""

from __future__ import annotations

from hivewire.cli import inspect, migrate, up  # noqa: F401  (registers commands)
from hivewire.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
