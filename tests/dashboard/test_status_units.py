"""The agent's badge status comes from its current state (issue 23, item 5): the hub's rules."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from hive_dashboard.config import DashboardConfig
from hive_dashboard.hub import Hub
from hive_dashboard.overview import OverviewBuilder
from hivewire import subjects
from hivewire.settings import Settings
from hivewire.transport import Msg
from hivewire.wire.agent import AgentState, LiveEvent, Presence


def hub(tmp_path: Path) -> Hub:
    return Hub(None, DashboardConfig.load(Settings(home=tmp_path, operator_token="tok"), env={}))


async def beat(h: Hub, state: str, reason: str | None = None, instance: str = "i1") -> None:
    p = Presence(state=state, since=time.time(), instance=instance, reason=reason)  # type: ignore[arg-type]
    await h._on_presence(Msg(subjects.presence("alice"), msgspec.json.encode(p)))


async def event(h: Hub, status: str) -> None:
    ev = LiveEvent(id=1, ts=1.0, kind="status_changed", payload={"status": status})
    await h._on_event(Msg(subjects.events("alice"), msgspec.json.encode(ev)))


async def test_a_heartbeat_that_says_online_clears_an_old_needs_login(tmp_path: Path) -> None:
    h = hub(tmp_path)
    await beat(h, "waiting", "needs_login")
    await event(h, "needs_login")
    assert h.badges["alice"]["status"] == "needs_login"
    await beat(h, "idle", instance="i2")  # a new instance with credentials: no status_changed needed
    assert h.badges["alice"]["status"] == "online"
    await beat(h, "waiting", "rate_limit", instance="i2")
    assert h.badges["alice"]["status"] == "rate_limited"
    await beat(h, "thinking", instance="i2")
    assert h.badges["alice"]["status"] == "online"
    await beat(h, "waiting", "recv", instance="i2")  # says nothing about the status
    assert h.badges["alice"]["status"] == "online"


async def test_login_flow_steps_are_not_statuses(tmp_path: Path) -> None:
    h = hub(tmp_path)
    await event(h, "online")
    await event(h, "needs_login_cancelled")
    await event(h, "login_done")
    assert h.badges["alice"]["status"] == "online"
    await event(h, "needs_login_started")
    assert h.badges["alice"]["status"] == "needs_login"


async def test_the_harness_answer_beats_the_hubs_badge(tmp_path: Path) -> None:
    h = hub(tmp_path)
    await beat(h, "idle")
    await event(h, "needs_login")  # an event the harness has since moved on from
    ob = OverviewBuilder(None, h, Settings(home=tmp_path, operator_token="tok"))  # type: ignore[arg-type]
    st = AgentState(status="online", turn_state="idle", turn_state_since=0.0, model="haiku", context_window=200_000)
    view = ob.agent_view("alice", None, st)
    assert (view.status, view.label) == ("online", "idle")
    # no answer (harness busy or gone): the hub's badge is all there is
    assert ob.agent_view("alice", None, None).label == "needs_login"
