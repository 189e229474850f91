"""The dashboard's one NATS endpoint."""

from __future__ import annotations

from hivewire.wire.common import Wire


class DashboardInfo(Wire, kw_only=True):
    """Where the operator's console is served (`hive.dashboard.info`)."""

    url: str
    version: str
