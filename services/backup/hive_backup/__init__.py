"""Hive backup service (micro service `hive-backup`)."""

from hive_backup.service import BackupService, build

__all__ = ["BackupService", "build"]
