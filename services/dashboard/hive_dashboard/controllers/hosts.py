"""The hosts page and its API (issue 26): every host with capacity, agents, version,
last heartbeat and whether it is lost, from the deployer's `hive.hosts.list`."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.response import Response

from hive_dashboard.auth import api_guard, page_guard
from hive_dashboard.controllers.pages import page
from hive_dashboard.deps import UpDep
from hivewire.wire import ops
from hivewire.wire.hosts import HostList, HostNameRequest


class HostsController(Controller):
    path = "/api/hosts"
    guards = [api_guard]
    tags = ["hosts"]

    @get("/", summary="Every host: capacity, agents, version, last heartbeat, lost or online")
    async def hosts(self, up: UpDep) -> HostList:
        got: HostList = await up.request(ops.HOSTS_LIST, HostNameRequest(name=""))
        return got


class HostsPage(Controller):
    include_in_schema = False

    @get("/hosts", guards=[page_guard])
    async def hosts_page(self, request: Request[Any, Any, Any]) -> Response[str]:
        return page(request, "hosts.html", title="hosts · hive")
