"""Litestar app factory; NATS and the `hive-dashboard` micro service live in its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, get
from litestar.response import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hivewire import subjects
from hivewire.nats_transport import NatsTransport
from hivewire.runner import resolve_nats_url
from hivewire.service import Context, Endpoint, MicroService
from hivewire.settings import Settings
from hivewire.transport import Transport
from hivewire.wire.common import Empty, Wire


class DashboardInfo(Wire, kw_only=True):
    url: str
    version: str


class DashboardService(MicroService):
    name = "hive-dashboard"
    description = "Hive operator dashboard"

    def __init__(self, transport: Transport, url: str) -> None:
        super().__init__(transport, metrics_url=f"{url}metrics")
        self.url = url

    def endpoints(self) -> list[Endpoint[Any]]:
        return [Endpoint("info", "hive.dashboard.info", Empty, self.info)]

    async def info(self, ctx: Context, req: Empty) -> DashboardInfo:
        return DashboardInfo(url=self.url, version=self.version)


@get("/healthz", sync_to_thread=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/metrics", sync_to_thread=False)
def metrics() -> Response[bytes]:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings | None = None, *, connect_nats: bool = True) -> Litestar:
    s = settings or Settings.from_env()
    url = f"http://{s.dashboard_addr}/"

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if not connect_nats:
            yield
            return
        transport = await NatsTransport.connect(resolve_nats_url(s), name="hive-dashboard")
        svc = DashboardService(transport, url)
        await svc.start()
        app.state.transport = transport
        try:
            yield
        finally:
            await svc.stop()
            await transport.close()

    _ = subjects  # subject helpers are used by the controllers as they land
    return Litestar(route_handlers=[healthz, metrics], lifespan=[lifespan])
