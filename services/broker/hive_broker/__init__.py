"""Hive broker service (micro service `hive-broker`)."""

from hive_broker.service import BrokerService, build

__all__ = ["BrokerService", "build"]
