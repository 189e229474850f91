"""Hive harness: one process per agent (micro service `hive-harness`)."""

from hive_harness.service import HarnessService, build

__all__ = ["HarnessService", "build"]
