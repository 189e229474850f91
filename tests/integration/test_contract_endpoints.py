"""Every service serves exactly the registry's ops for it (hivewire.wire.ops), no more, no fewer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hivewire.service import MicroService
from hivewire.settings import Settings
from hivewire.transport import MemoryTransport
from hivewire.wire import ops
from hivewire.wire.op import Service


def _build(service: Service, t: MemoryTransport, s: Settings) -> MicroService:
    if service is Service.BACKUP:
        from hive_backup.service import BackupService
        return BackupService(t, s)
    if service is Service.DASHBOARD:
        from hive_dashboard.app import DashboardService
        return DashboardService(t, "http://127.0.0.1:1/")
    if service is Service.BROKER:
        from hive_broker.service import BrokerService
        return BrokerService(t, s)
    if service is Service.DEPLOYER:
        from hive_deployer.service import DeployerService
        return DeployerService(t, s)
    if service is Service.HARNESS:
        from hive_harness.service import HarnessService
        return HarnessService(t, s, "alice")
    from hive_agenthost.service import AgentHostService
    return AgentHostService(t, s, host="h1")


PARAMS: dict[Service, dict[str, str]] = {Service.HARNESS: {"agent": "alice"}, Service.AGENTHOST: {"host": "h1"}}


@pytest.mark.parametrize("service", list(Service), ids=lambda s: s.value)
def test_endpoints_are_the_registrys_ops(service: Service, settings: Settings) -> None:
    svc = _build(service, MemoryTransport(), settings)
    assert svc.name == service.value
    have = {(ep.name, ep.subject, ep.request_type) for ep in svc.endpoints()}
    params = PARAMS.get(service, {})
    want = {(o.name, o.fill(**params), o.request) for o in ops.for_service(service)}
    assert have == want


def test_a_service_cannot_serve_what_the_registry_lacks() -> None:
    from hivewire.service import Endpoint
    from hivewire.wire.common import Empty

    async def h(ctx: Any, req: Empty) -> Empty:
        return req

    make: Callable[[], Any] = lambda: Endpoint("gc", "hive.deployer.gc", Empty, h)  # noqa: E731
    with pytest.raises(ValueError, match="not in the wire contract"):
        make()
