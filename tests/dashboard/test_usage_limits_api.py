"""Usage limits reach the browser (issue 23 item 3): AgentView.rate_limited_until and .plan, and the
presence's `until` on the SSE stream. Litestar's test client, FAKE services on the real nats-server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient

from hive_dashboard.config import DashboardConfig
from hive_dashboard.hub import Hub
from hive_dashboard.overview import plan_windows, rate_limited_until
from hivewire import subjects
from hivewire.settings import Settings
from hivewire.transport import Msg
from hivewire.wire.agent import Presence
from tests.dashboard.conftest import Stack
from tests.support.procs import wait_for

Client = AsyncTestClient  # type: ignore[type-arg]


def plan(now: float) -> dict[str, dict[str, Any]]:
    return {"five_hour": {"utilization": 1.0, "resets_at": now + 90, "status": "rejected"},
            "seven_day": {"utilization": 0.85, "resets_at": now + 4 * 86400, "status": "allowed_warning"}}


async def test_agent_view_carries_the_park_and_the_plan(authed: Client, stack: Stack) -> None:
    alice = stack.harnesses["alice"]
    idle = (await authed.get("/api/agents/alice")).json()
    assert idle["rate_limited_until"] is None and idle["plan"] == {}

    now = time.time()
    await stack.run(alice.rate_limit(now + 90, plan(now)))
    a = (await authed.get("/api/agents/alice")).json()
    assert a["status"] == "rate_limited"
    assert a["rate_limited_until"] == now + 90
    assert a["plan"] == {"five_hour": {"utilization": 1.0, "resets_at": now + 90, "status": "rejected"},
                         "seven_day": {"utilization": 0.85, "resets_at": now + 4 * 86400,
                                       "status": "allowed_warning"}}

    async def labelled() -> bool:
        ov = (await authed.get("/api/overview")).json()
        return next(x for x in ov["agents"] if x["name"] == "alice")["label"] == "rate_limited"

    await wait_for(labelled)
    ov = (await authed.get("/api/overview")).json()
    row = next(x for x in ov["agents"] if x["name"] == "alice")
    assert row["rate_limited_until"] == now + 90 and row["plan"]["seven_day"]["status"] == "allowed_warning"
    assert row["presence"]["until"] == now + 90  # the heartbeat carries it too
    listed = next(x for x in (await authed.get("/api/agents")).json() if x["name"] == "alice")
    assert listed["rate_limited_until"] == now + 90 and set(listed["plan"]) == {"five_hour", "seven_day"}

    # the park ends: nothing left over
    alice.status, alice.rate_limited_until = "online", None
    alice.plan = {"five_hour": {"utilization": 0.02, "resets_at": now + 18000, "status": "allowed"}}
    await stack.run(alice.set_presence("idle"))
    a = (await authed.get("/api/agents/alice")).json()
    assert a["rate_limited_until"] is None and a["plan"]["five_hour"]["status"] == "allowed"


async def test_openapi_describes_the_fields(authed: Client, stack: Stack) -> None:
    schemas = (await authed.get("/schema/openapi.json")).json()["components"]["schemas"]
    view = next(v for k, v in schemas.items() if k.endswith("AgentView"))
    assert {"rate_limited_until", "plan"} <= set(view["properties"])
    window = next(v for k, v in schemas.items() if k.endswith("PlanWindow"))
    assert set(window["properties"]) == {"utilization", "resets_at", "status"}


def test_a_malformed_plan_window_is_left_out() -> None:
    got = plan_windows({"five_hour": {"utilization": 0.5, "resets_at": 1.0, "status": "allowed", "extra": 1},
                        "weird": {"utilization": "lots"}})
    assert list(got) == ["five_hour"] and got["five_hour"].utilization == 0.5


async def test_presence_until_goes_live_and_its_change_is_sent(tmp_path: Path) -> None:
    hub = Hub(None, DashboardConfig.load(Settings(home=tmp_path, operator_token="tok"), env={}))
    c = hub.subscribe(None)

    async def beat(until: float | None) -> None:
        p = Presence(state="waiting", reason="rate_limit", since=1.0, instance="i1", until=until)
        await hub._on_presence(Msg(subjects.presence("alice"), msgspec.json.encode(p)))

    await beat(1000.0)
    await beat(1000.0)  # a heartbeat: no change, nothing sent
    await beat(2000.0)  # parked again, later: sent
    sent = [json.loads(c.queue.get_nowait().data) for _ in range(c.queue.qsize())]  # type: ignore[union-attr]
    assert [s["until"] for s in sent] == [1000.0, 2000.0]
    assert hub.presence["alice"].until == 2000.0 and hub.badges["alice"]["status"] == "rate_limited"
    # no ctl.state answer (a busy harness): the live heartbeat says when the park ends; a dead one says nothing
    assert rate_limited_until(hub.presence["alice"], None) == 2000.0
    hub.sweep(now=time.time() + 3600)
    assert rate_limited_until(hub.presence["alice"], None) is None
