"""Hive agent host (issue 26): runs the agents the hub placed on this host (micro service `hive-agenthost`)."""

from hive_agenthost.service import AgentHostService, build

__all__ = ["AgentHostService", "build"]
