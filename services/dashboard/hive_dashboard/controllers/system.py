"""Backups, the SSE stream, /healthz and /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.params import HeaderParameter, JSONBody, QueryParameter
from litestar.response import Response, Stream
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hive_dashboard.auth import api_guard
from hive_dashboard.controllers.common import act
from hive_dashboard.deps import HubDep, UpDep
from hive_dashboard.hub import Client
from hive_dashboard.schemas import ActionResult, BackupRunBody, BackupView
from hivewire.names import validate_agent_name
from hivewire.wire import ops
from hivewire.wire.backup import ListRequest, RunRequest


class BackupsController(Controller):
    path = "/api/backups"
    guards = [api_guard]
    tags = ["backups"]

    @get("/", summary="Snapshots and the last backup result")
    async def backups(self, up: UpDep, hub: HubDep) -> BackupView:
        snaps = await up.request(ops.BACKUP_LIST, ListRequest())
        return BackupView(snapshots=snaps.snapshots[-50:], last_done=hub.last_backup)

    @post("/run", summary="Take a snapshot now")
    async def run(self, up: UpDep, data: JSONBody[BackupRunBody | None] = None) -> ActionResult:
        req = RunRequest(classes=data.classes if data else [])
        return await act("backup_run", up.request(ops.BACKUP_RUN, req, timeout=120.0))


async def sse_stream(hub: HubDep, client: Client, ping_s: float) -> AsyncIterator[bytes]:
    try:
        yield b"retry: 1000\n\n"
        for ev in client.backlog:
            yield ev.encode()
        client.backlog.clear()
        while True:
            try:
                ev = await asyncio.wait_for(client.queue.get(), ping_s)
            except TimeoutError:
                yield b": ping\n\n"
                continue
            if ev is None:  # hub stopping, or this client fell behind: reconnect
                return
            yield ev.encode()
    finally:
        hub.unsubscribe(client)


class StreamController(Controller):
    path = "/api/stream"
    guards = [api_guard]
    tags = ["live"]

    @get("/", summary="Server-sent events: presence, event, turn, broker, deployer, backup, reset")
    async def stream(
        self, request: Request[Any, Any, Any], hub: HubDep,
        agent: Annotated[str | None, QueryParameter(max_length=31, description="only this agent's events")] = None,
        last_event_id: Annotated[int | None, HeaderParameter(name="last-event-id", ge=0, le=2**62)] = None,
    ) -> Stream:
        if agent is not None:
            validate_agent_name(agent, allow_reserved=True)
        client = hub.subscribe(last_event_id, agent)
        return Stream(
            sse_stream(hub, client, request.app.state.cfg.ping_interval_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


@get("/healthz", sync_to_thread=False, tags=["system"])
def healthz(request: Request[Any, Any, Any]) -> dict[str, Any]:
    transport = getattr(request.app.state, "transport", None)
    nc = getattr(transport, "nc", None)
    nats_ok = bool(nc is not None and nc.is_connected)
    return {"status": "ok", "nats": "connected" if nats_ok else "disconnected",
            "sse_clients": request.app.state.hub.client_count}


@get("/metrics", sync_to_thread=False, tags=["system"])
def metrics() -> Response[bytes]:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
