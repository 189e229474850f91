"""The hostile agent's hive: see hostile.py."""

from .hostile import host

__all__ = ["host"]
