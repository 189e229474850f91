"""Hive harness: one process per agent (micro service `hive-harness`).

`HarnessService` and `build` are imported lazily: the MCP bridge the agent CLI
launches (`python -m hive_harness.mcp_bridge`) must start fast and must not
drag the whole service in before it answers the CLI's handshake.
"""

from typing import Any

__all__ = ["HarnessService", "build"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from hive_harness import service

        return getattr(service, name)
    raise AttributeError(f"module 'hive_harness' has no attribute {name!r}")
