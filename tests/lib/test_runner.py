"""`hivewire.runner.serve`: what every service process does around its service."""

from __future__ import annotations

import asyncio
import gc

from hivewire.runner import serve
from hivewire.service import MicroService
from hivewire.settings import Settings
from hivewire.transport import Transport

from support.procs import wait_for


async def test_serve_keeps_startup_objects_out_of_later_gc_passes(settings: Settings) -> None:
    # Profiling the broker showed the GC's full passes rescanning every module and
    # startup object ~9% of its CPU; serve() freezes them once the service is up.
    gc.unfreeze()
    started = asyncio.Event()

    async def build(transport: Transport, _settings: Settings, metrics_url: str) -> MicroService:
        assert gc.get_freeze_count() == 0  # nothing frozen before the service exists
        started.set()
        return MicroService(transport, metrics_url=metrics_url)

    stop = asyncio.Event()
    task = asyncio.create_task(serve("gc-probe", build, settings, stop))
    try:
        await asyncio.wait_for(started.wait(), 10)

        async def frozen() -> bool:
            return gc.get_freeze_count() > 0

        await wait_for(frozen)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        gc.unfreeze()  # give the test process its objects back
