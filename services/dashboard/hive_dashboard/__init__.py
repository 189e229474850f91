"""Hive dashboard: the operator's browser console (Litestar on uvicorn)."""

from hive_dashboard.app import create_app

__all__ = ["create_app"]
