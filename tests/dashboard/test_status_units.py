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


async def test_typing_goes_only_to_that_agents_streams_and_is_not_kept(tmp_path: Path) -> None:
    from hivewire.wire.agent import Typing

    h = hub(tmp_path)
    home, alice_page, bob_page = h.subscribe(None), h.subscribe(None, "alice"), h.subscribe(None, "bob")
    t = Typing(block="m:0", offset=0, text="hel")
    await h._on_typing(Msg(subjects.typing("alice"), msgspec.json.encode(t)))
    assert home.queue.empty() and bob_page.queue.empty()
    ev = alice_page.queue.get_nowait()
    assert ev is not None and ev.kind == "typing" and b'"text":"hel"' in ev.data
    late = h.subscribe(0, "alice")  # a resume replays the ring buffer: typing was never in it
    assert all(e.kind != "typing" for e in late.backlog)
