"""Litestar app factory; NATS, the hub and the `hive-dashboard` micro service live in its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from litestar import Litestar, Response
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router

from hive_dashboard.config import DashboardConfig
from hive_dashboard.controllers.agents import AgentsController
from hive_dashboard.controllers.broker import BrokerController
from hive_dashboard.controllers.costs import CostsController
from hive_dashboard.controllers.hosts import HostsController, HostsPage
from hive_dashboard.controllers.pages import PagesController
from hive_dashboard.controllers.system import BackupsController, StreamController, healthz, metrics
from hive_dashboard.deps import DEPENDENCIES
from hive_dashboard.errors import EXCEPTION_HANDLERS
from hive_dashboard.hosts import HostCheck
from hive_dashboard.hub import Hub
from hive_dashboard.metrics import latency_middleware
from hive_dashboard.overview import OverviewBuilder
from hive_dashboard.upstream import Upstream
from hivewire.nats_transport import NatsTransport
from hivewire.runner import resolve_nats_url
from hivewire.service import Context, Endpoint, MicroService
from hivewire.settings import Settings
from hivewire.transport import Transport
from hivewire.wire import ops
from hivewire.wire.common import Empty
from hivewire.wire.dashboard import DashboardInfo

VERSION = "0.1.0"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class DashboardService(MicroService):
    name = "hive-dashboard"
    description = "Hive operator dashboard"

    def __init__(self, transport: Transport, url: str) -> None:
        super().__init__(transport, metrics_url=f"{url}metrics")
        self.url = url

    def endpoints(self) -> list[Endpoint[Any]]:
        return [Endpoint.of(ops.DASHBOARD_INFO, self.info)]

    async def info(self, ctx: Context, req: Empty) -> DashboardInfo:
        return DashboardInfo(url=self.url, version=self.version)


async def security_headers(response: Response[Any]) -> Response[Any]:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def create_app(
    settings: Settings | None = None,
    *,
    connect_nats: bool = True,
    transport: Transport | None = None,
    config: DashboardConfig | None = None,
) -> Litestar:
    """The dashboard app. `transport` injects a ready transport (tests); else NATS is dialled in the lifespan."""
    cfg = config or DashboardConfig.load(settings)
    s = cfg.settings
    url = f"http://{s.dashboard_addr}/"

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        own = None
        t = transport
        if t is None and connect_nats:
            t = own = await NatsTransport.connect(resolve_nats_url(s), name="hive-dashboard")
        hub = Hub(t, cfg)
        up = Upstream(t, cfg)
        app.state.update(transport=t, hub=hub, up=up, overview=OverviewBuilder(up, hub, s))
        svc = DashboardService(t, url) if t is not None else None
        await hub.start()
        if svc:
            await svc.start()
        try:
            yield
        finally:
            if svc:
                await svc.stop()
            await hub.stop()
            if own is not None:
                await own.close()

    static = create_static_files_router(
        path="/static", directories=[str(files("hive_dashboard") / "static")], name="static",
        include_in_schema=False,
    )
    openapi = OpenAPIConfig(
        title="Hive dashboard API",
        version=VERSION,
        path="/schema",
        render_plugins=[JsonRenderPlugin(path=["/", "/openapi.json"])],
        components=Components(security_schemes={
            "operatorToken": SecurityScheme(type="http", scheme="bearer", description="HIVE_OPERATOR_TOKEN"),
            "session": SecurityScheme(type="apiKey", name="hive_session", security_scheme_in="cookie"),
        }),
        security=[{"operatorToken": []}, {"session": []}],
    )
    app = Litestar(
        route_handlers=[PagesController, AgentsController, BrokerController, CostsController, BackupsController,
                        StreamController, HostsController, HostsPage,
                        healthz, metrics, static],
        dependencies=DEPENDENCIES,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        middleware=[DefineMiddleware(HostCheck, config=cfg.host_check), latency_middleware],  # Host first
        after_request=security_headers,
        openapi_config=openapi,
    )
    app.state.cfg = cfg
    return app
