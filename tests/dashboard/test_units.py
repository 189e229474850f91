"""Unit tests of the pure parts: hub resume/fan-out, staleness, labels, charts, auth helpers."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import msgspec

from hive_dashboard import auth
from hive_dashboard.charts import ctx_chart_svg, summarize, turn_ctx
from hive_dashboard.config import DashboardConfig
from hive_dashboard.hub import Hub, PresenceView
from hive_dashboard.overview import presence_label
from hivewire import subjects
from hivewire.settings import Settings
from hivewire.transport import Msg
from hivewire.wire.agent import LiveEvent, Presence, TurnStats


def cfg(tmp_path: Path, **kw: object) -> DashboardConfig:
    return DashboardConfig.load(Settings(home=tmp_path, operator_token="tok"), env={}, **kw)


def presence_msg(agent: str, state: str, instance: str = "i1", reason: str | None = None) -> Msg:
    p = Presence(state=state, since=time.time(), instance=instance, reason=reason)  # type: ignore[arg-type]
    return Msg(subjects.presence(agent), msgspec.json.encode(p))


async def test_resume_replays_exactly_the_missed_events(tmp_path: Path) -> None:
    hub = Hub(None, cfg(tmp_path))
    first = [hub.emit("broker", None, {"n": i}) for i in range(5)]
    c = hub.subscribe(first[2].id)
    assert [e.id for e in c.backlog] == [first[3].id, first[4].id]
    live = hub.emit("broker", None, {"n": 5})
    assert c.queue.get_nowait() == live
    hub.unsubscribe(c)
    assert hub.client_count == 0


async def test_lost_resume_point_sends_reset_first(tmp_path: Path) -> None:
    hub = Hub(None, cfg(tmp_path, sse_buffer=3))
    evs = [hub.emit("broker", None, {"n": i}) for i in range(6)]
    c = hub.subscribe(evs[0].id)  # fell out of the 3-event ring
    assert c.backlog[0].kind == "reset"
    assert [e.id for e in c.backlog[1:]] == [e.id for e in evs[3:]]
    assert hub.subscribe(evs[-1].id + 1000).backlog[0].kind == "reset"  # an id from the future: other process
    assert hub.subscribe(evs[-1].id).backlog == []
    assert hub.subscribe(None).backlog == []


async def test_agent_filter_and_slow_client_is_cut_off(tmp_path: Path) -> None:
    hub = Hub(None, cfg(tmp_path))
    c = hub.subscribe(None, agent="alice")
    hub.emit("presence", "bob", {})
    hub.emit("presence", "alice", {})
    hub.emit("broker", None, {})
    assert [c.queue.get_nowait().kind, c.queue.get_nowait().kind] == ["presence", "broker"]  # type: ignore[union-attr]
    for _ in range(1200):
        hub.emit("presence", "alice", {})
    assert c.overflowed
    items = [c.queue.get_nowait() for _ in range(c.queue.qsize())]
    assert items[-1] is None  # the stream ends; the browser resumes from the ring buffer


async def test_presence_changes_only_and_stale_heartbeat_is_dead(tmp_path: Path) -> None:
    hub = Hub(None, cfg(tmp_path, stale_after_s=5))
    c = hub.subscribe(None)
    await hub._on_presence(presence_msg("alice", "idle"))
    await hub._on_presence(presence_msg("alice", "idle"))  # heartbeat, no change
    await hub._on_presence(presence_msg("alice", "waiting", reason="recv"))
    await hub._on_presence(Msg(subjects.presence("alice"), b"{not json"))
    await hub._on_presence(Msg("hive.agent.BAD.presence", msgspec.json.encode({"state": "idle"})))
    kinds = [json.loads(c.queue.get_nowait().data)["state"] for _ in range(c.queue.qsize())]  # type: ignore[union-attr]
    assert kinds == ["idle", "waiting"]
    assert hub.sweep(now=time.time() + 1) == []
    assert hub.sweep(now=time.time() + 6) == ["alice"]
    dead = json.loads(c.queue.get_nowait().data)  # type: ignore[union-attr]
    assert dead["alive"] is False and presence_label(hub.presence["alice"], None) == "dead"
    await hub._on_presence(presence_msg("alice", "idle", instance="i2"))  # respawned
    assert hub.presence["alice"].alive


async def test_badges_follow_live_events(tmp_path: Path) -> None:
    hub = Hub(None, cfg(tmp_path))
    for kind, payload in [("model_changed", {"model": "opus"}), ("token_usage_changed", {"ctx": 9, "cost": 99}),
                          ("status_changed", {"status": "needs_login_started", "url": "https://x"})]:
        ev = LiveEvent(id=1, ts=1.0, kind=kind, payload=payload)  # type: ignore[arg-type]
        await hub._on_event(Msg(subjects.events("alice"), msgspec.json.encode(ev)))
    assert hub.badges["alice"] == {"model": "opus", "ctx": 9, "cost": 99, "status": "needs_login"}


def test_presence_labels() -> None:
    def p(state: str, alive: bool = True, reason: str | None = None) -> PresenceView:
        return PresenceView(agent="a", state=state, alive=alive, reason=reason)

    assert presence_label(None, None) == "offline"
    assert presence_label(p("idle"), None) == "idle"
    assert presence_label(p("thinking"), "online") == "thinking"
    assert presence_label(p("compacting"), None) == "compacting"
    assert presence_label(p("waiting", reason="rate limit"), None) == "waiting(rate limit)"
    assert presence_label(p("idle"), "needs_login") == "needs_login"
    assert presence_label(p("idle"), "rate_limited") == "rate_limited"
    assert presence_label(p("thinking", alive=False), "online") == "dead"
    assert presence_label(p("offline", alive=False), None) == "offline"


def test_stats_and_chart() -> None:
    def turn(ctx: int, kind: str = "ok") -> TurnStats:
        return TurnStats(agent="a", model="m", wake_from="message", result_kind=kind, started_at=0, ended_at=1,  # type: ignore[arg-type]
                         duration_ms=1000, last_input_tokens=ctx - 10, last_cache_read_input_tokens=10,
                         context_window=100_000, input_tokens=5, tool_call_count=2)

    turns = [turn(20_000), turn(60_000), turn(80_000, "failed")]
    s = summarize(turns)
    assert (s.turns, s.ok, s.failed, s.tool_calls, s.last_ctx, s.context_window) == (3, 2, 1, 6, 80_000, 100_000)
    assert turn_ctx(turns[0]) == 20_000
    svg = ctx_chart_svg(turns)
    assert svg.count("<circle") == 3 and 'class="wm50"' in svg and 'class="wm75"' in svg
    assert ">50k<" in svg and ">75k<" in svg  # the watermarks sit at 50% and 75% of the window
    assert "no turns yet" in ctx_chart_svg([])


def test_session_tokens_and_redirect_targets(tmp_path: Path) -> None:
    c = cfg(tmp_path)
    v = auth.make_session(c)
    assert auth.session_valid(c, v) and "tok" not in v
    assert not auth.session_valid(c, v[:-1] + ("0" if v[-1] != "0" else "1"))
    assert not auth.session_valid(c, auth.make_session(c, now=time.time() - auth.SESSION_MAX_AGE - 10))
    other = cfg(tmp_path / "x", operator_token="other")
    assert not auth.session_valid(other, v)
    assert not auth.session_valid(c, "garbage") and not auth.session_valid(c, None)
    assert auth.safe_next("/agents/a") == "/agents/a"
    for bad in ("//evil.example", "https://evil.example", "\\\\evil", None, "", "/\\evil"):
        assert auth.safe_next(bad) == "/"


async def test_hub_stop_ends_streams(tmp_path: Path) -> None:
    hub = Hub(None, cfg(tmp_path))
    c = hub.subscribe(None)
    await hub.stop()
    assert await asyncio.wait_for(c.queue.get(), 1) is None
