"""Litestar controllers, one module per domain."""
