"""Hive deployer service (micro service `hive-deployer`)."""

from hive_deployer.service import DeployerService, build

__all__ = ["DeployerService", "build"]
