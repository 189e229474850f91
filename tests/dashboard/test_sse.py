"""SSE through a real uvicorn process: ids, resume with Last-Event-ID, pings, staleness."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import msgspec

from hivewire import subjects
from hivewire.nats_transport import NatsTransport
from hivewire.wire.agent import Presence
from tests.dashboard.conftest import Dashboard
from tests.dashboard.sse import SseReader


@asynccontextmanager
async def open_stream(dash: Dashboard, last_id: int | None = None, query: str = "") -> AsyncIterator[SseReader]:
    headers = {"Authorization": f"Bearer {dash.token}"}
    if last_id is not None:
        headers["Last-Event-ID"] = str(last_id)
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=30.0)) as c, \
            c.stream("GET", f"{dash.url}/api/stream{query}", headers=headers) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        yield SseReader(r)


async def clients(dash: Dashboard) -> int:
    async with httpx.AsyncClient() as c:
        return int((await c.get(dash.url + "/healthz")).json()["sse_clients"])


async def wait_clients(dash: Dashboard, n: int) -> None:
    for _ in range(100):
        if await clients(dash) == n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {n} SSE clients, have {await clients(dash)}")


async def test_sse_resume_without_gaps_or_duplicates(dashboard: Dashboard, nats_url: str) -> None:
    t = await NatsTransport.connect(nats_url, name="sse-test", forever=False)

    async def presence(agent: str, state: str, n: int) -> None:
        p = Presence(state=state, since=time.time(), instance=f"inst-{n}", ts=time.time())  # type: ignore[arg-type]
        await t.publish(subjects.presence(agent), msgspec.json.encode(p))
        await t.flush()

    try:
        async with httpx.AsyncClient() as c:
            assert (await c.get(dashboard.url + "/api/stream")).status_code == 401
        seen: list[int] = []
        async with open_stream(dashboard) as s:
            await wait_clients(dashboard, 1)
            for n in range(3):
                await presence("zed", "thinking" if n % 2 else "idle", n)
            for n in range(3):
                ev = await s.next()
                assert ev.kind == "presence" and ev.data["instance"] == f"inst-{n}"
                assert ev.id is not None
                seen.append(ev.id)
            # keep-alive pings arrive while nothing happens
            try:
                await s.next(timeout=1.2)
            except TimeoutError:
                pass
            assert "ping" in s.comments
        await wait_clients(dashboard, 0)
        # Missed while disconnected:
        for n in range(3, 6):
            await presence("zed", "idle" if n % 2 else "thinking", n)
        await asyncio.sleep(0.3)
        async with open_stream(dashboard, last_id=seen[-1]) as s:
            got = [await s.next() for _ in range(3)]
            assert [e.data["instance"] for e in got] == ["inst-3", "inst-4", "inst-5"]
            await presence("zed", "compacting", 6)
            live = await s.next()
            assert live.data["instance"] == "inst-6"
            ids = seen + [e.id for e in got] + [live.id]
            assert ids == sorted(ids) and len(set(ids)) == len(ids)
        # A resume point the ring no longer holds (or from another process) gives a reset.
        async with open_stream(dashboard, last_id=1) as s:
            assert (await s.next()).kind == "reset"
        # Filtered: only this agent's events.
        async with open_stream(dashboard, query="?agent=yan") as s:
            await wait_clients(dashboard, 1)
            await presence("zed", "idle", 7)
            await presence("yan", "idle", 8)
            ev = await s.next()
            assert ev.data["agent"] == "yan"
            # No heartbeat since: yan goes stale (HIVE_DASHBOARD_STALE_S=3) and is reported dead.
            dead = await s.until(lambda e: e.kind == "presence" and e.data["alive"] is False, timeout=8)
            assert dead.data["agent"] == "yan" and dead.data["state"] == "idle"
        async with httpx.AsyncClient() as c:
            m = (await c.get(dashboard.url + "/metrics")).text
        assert "hive_dashboard_sse_clients" in m and 'hive_dashboard_hub_events_total{kind="presence"}' in m
    finally:
        await t.close()
