"""NATS to browsers: one subscription per subject family, fanned out over SSE.

Every message that arrives becomes an `SseEvent` with a monotonically
increasing id, kept in a bounded ring buffer. A browser that reconnects with
`Last-Event-ID` gets exactly the events after that id (no gaps, no
duplicates); when the id has already fallen out of the buffer (or belongs to
an earlier dashboard process) it gets a `reset` event and reloads its state.

The hub also keeps the little state the pages need without asking anyone:
the last heartbeat of every agent (stale means dead), the badges carried by
live events, the recent turn stats, and the last backup result.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, get_args

import msgspec
import structlog

from hive_dashboard.config import DashboardConfig
from hive_dashboard.metrics import BAD_MESSAGES, HUB_EVENTS, SSE_CLIENTS, SSE_DROPPED
from hivewire import subjects
from hivewire.names import is_agent_name
from hivewire.tasks import cancel_and_wait
from hivewire.transport import Msg, Subscription, Transport
from hivewire.wire.agent import AgentStatus, LiveEvent, Presence, TurnStats, Typing
from hivewire.wire.backup import BackupDone
from hivewire.wire.broker import Changed

log = structlog.get_logger("hive_dashboard.hub")

QUEUE_MAX = 1000
TURNS_KEPT = 500
STATUSES = frozenset(get_args(AgentStatus))
BADGE_KINDS = ("status_changed", "model_changed", "token_usage_changed", "turn_state_changed")

_enc = msgspec.json.Encoder()


@dataclass(frozen=True)
class SseEvent:
    id: int
    kind: str
    agent: str | None
    data: bytes

    def encode(self) -> bytes:
        return b"id: %d\nevent: %s\ndata: %s\n\n" % (self.id, self.kind.encode(), self.data)


class PresenceView(msgspec.Struct, kw_only=True):
    agent: str
    state: str
    reason: str | None = None
    since: float = 0.0
    instance: str = ""
    seen_at: float = 0.0
    alive: bool = True
    until: float | None = None  # waiting/rate_limit: when the park ends (unix s; Presence.until)


@dataclass(eq=False)
class Client:
    agent: str | None
    queue: asyncio.Queue[SseEvent | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    backlog: list[SseEvent] = field(default_factory=list)
    overflowed: bool = False

    def wants(self, ev: SseEvent) -> bool:
        return self.agent is None or ev.agent is None or ev.agent == self.agent


class Hub:
    """Owns the NATS subscriptions and the SSE fan-out."""

    def __init__(self, transport: Transport | None, cfg: DashboardConfig) -> None:
        self.transport = transport
        self.cfg = cfg
        # Ids keep growing across dashboard restarts, so an id from an old
        # process is always older than this buffer and triggers a reset.
        self._seq = time.time_ns() // 1000
        self._buffer: deque[SseEvent] = deque(maxlen=max(1, cfg.sse_buffer))
        self._clients: set[Client] = set()
        self._subs: list[Subscription] = []
        self._watch: asyncio.Task[None] | None = None
        self.presence: dict[str, PresenceView] = {}
        self.badges: dict[str, dict[str, Any]] = {}
        self.turns: dict[str, deque[TurnStats]] = {}
        self.last_backup: BackupDone | None = None

    # --- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        if self.transport is None:
            return
        families = (
            (subjects.agent_pattern("presence"), self._on_presence),
            (subjects.agent_pattern("events"), self._on_event),
            (subjects.agent_pattern("turns"), self._on_turn),
            (subjects.agent_pattern("typing"), self._on_typing),
            (subjects.BROKER_CHANGED, self._on_broker),
            (subjects.DEPLOYER_STATE_ALL, self._on_deployer),
            (subjects.BACKUP_DONE, self._on_backup),
        )
        for pattern, handler in families:
            self._subs.append(await self.transport.subscribe(pattern, handler))
        await self.transport.flush()
        self._watch = asyncio.create_task(self._watch_heartbeats())

    async def stop(self) -> None:
        await cancel_and_wait(self._watch)
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs.clear()
        for c in list(self._clients):
            _offer(c, None)

    # --- SSE clients ------------------------------------------------------------
    def subscribe(self, last_id: int | None, agent: str | None = None) -> Client:
        """Register a client; its backlog holds what it missed since `last_id`.

        Snapshot and registration happen without an await in between, so no
        event can fall between the backlog and the live queue.
        """
        client = Client(agent)
        if last_id is not None:
            oldest = self._buffer[0].id if self._buffer else self._seq + 1
            if last_id > self._seq or last_id < oldest - 1:
                client.backlog.append(self._make("reset", None, {"reason": "resume point lost"}, store=False))
                missed: Iterable[SseEvent] = self._buffer
            else:
                missed = (e for e in self._buffer if e.id > last_id)
            client.backlog.extend(e for e in missed if client.wants(e))
        self._clients.add(client)
        SSE_CLIENTS.inc()
        return client

    def unsubscribe(self, client: Client) -> None:
        if client in self._clients:
            self._clients.discard(client)
            SSE_CLIENTS.dec()

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def emit(self, kind: str, agent: str | None, payload: Any) -> SseEvent:
        """Record an event and hand it to every interested client."""
        ev = self._make(kind, agent, payload)
        HUB_EVENTS.labels(kind).inc()
        for c in list(self._clients):
            if c.wants(ev):
                _offer(c, ev)
        return ev

    def emit_transient(self, kind: str, agent: str, payload: Any) -> None:
        """Hand an event to the streams of that one agent (`?agent=`), without keeping it in the ring
        buffer: a resume never replays it, and swarm-wide streams (the home page) never get it."""
        ev = self._make(kind, agent, payload, store=False)
        HUB_EVENTS.labels(kind).inc()
        for c in list(self._clients):
            if c.agent == agent:
                _offer(c, ev)

    def _make(self, kind: str, agent: str | None, payload: Any, store: bool = True) -> SseEvent:
        if store:
            self._seq += 1
            ev = SseEvent(self._seq, kind, agent, _enc.encode(payload))
            self._buffer.append(ev)
            return ev
        return SseEvent(self._seq, kind, agent, _enc.encode(payload))

    # --- NATS handlers ----------------------------------------------------------
    @staticmethod
    def _agent(msg: Msg) -> str | None:
        name = subjects.token(msg.subject, 2)
        return name if is_agent_name(name) else None

    def _decode(self, msg: Msg, type_: type[Any], family: str) -> Any:
        try:
            return msgspec.json.decode(msg.data, type=type_)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            BAD_MESSAGES.labels(family).inc()
            log.warning("bad_message", subject=msg.subject, error=str(exc))
            return None

    async def _on_presence(self, msg: Msg) -> None:
        agent, p = self._agent(msg), self._decode(msg, Presence, "presence")
        if agent is None or p is None:
            return
        view = PresenceView(
            agent=agent, state=p.state, reason=p.reason, since=p.since, instance=p.instance,
            seen_at=time.time(), alive=p.state != "offline", until=p.until,
        )
        prev = self.presence.get(agent)
        self.presence[agent] = view
        # Heartbeats repeat; only changes go to the browsers.
        if prev is None or (prev.state, prev.reason, prev.instance, prev.alive, prev.until) != (
            view.state, view.reason, view.instance, view.alive, view.until
        ):
            status = status_from_presence(view)
            if status is not None:  # the harness's heartbeat says where it stands now
                self.badges.setdefault(agent, {})["status"] = status
            self.emit("presence", agent, view)

    async def _on_event(self, msg: Msg) -> None:
        agent, ev = self._agent(msg), self._decode(msg, LiveEvent, "events")
        if agent is None or ev is None:
            return
        if ev.kind in BADGE_KINDS:
            self._update_badges(agent, ev)
        self.emit("event", agent, {"agent": agent, "event": ev})

    def _update_badges(self, agent: str, ev: LiveEvent) -> None:
        b = self.badges.setdefault(agent, {})
        p = ev.payload
        if ev.kind == "status_changed" and isinstance(p.get("status"), str):
            status = normalize_status(p["status"])
            if status in STATUSES:  # not a login flow's other steps (needs_login_cancelled, login_done)
                b["status"] = status
        elif ev.kind == "model_changed" and "model" in p:
            b["model"] = p["model"]
        elif ev.kind == "token_usage_changed":
            b.update({k: p[k] for k in ("ctx", "cost") if k in p})
        elif ev.kind == "turn_state_changed" and "state" in p:
            b["turn_state"] = p["state"]
            b["turn_state_since"] = p.get("since", ev.ts)

    async def _on_typing(self, msg: Msg) -> None:
        """Partial text as it streams: live only (the final text is an ordinary event, kept)."""
        agent, t = self._agent(msg), self._decode(msg, Typing, "typing")
        if agent is not None and t is not None:
            self.emit_transient("typing", agent, {"agent": agent, "typing": t})

    async def _on_turn(self, msg: Msg) -> None:
        agent, t = self._agent(msg), self._decode(msg, TurnStats, "turns")
        if agent is None or t is None:
            return
        self.turns.setdefault(agent, deque(maxlen=TURNS_KEPT)).append(t)
        self.emit("turn", agent, {"agent": agent, "turn": t})

    async def _on_broker(self, msg: Msg) -> None:
        ch = self._decode(msg, Changed, "broker")
        if ch is not None:
            self.emit("broker", None, ch)

    async def _on_deployer(self, msg: Msg) -> None:
        name = subjects.token(msg.subject, 3)
        info = self._decode(msg, dict[str, Any], "deployer")
        if is_agent_name(name) and info is not None:
            self.emit("deployer", name, {"agent": name, "info": info})

    async def _on_backup(self, msg: Msg) -> None:
        done = self._decode(msg, BackupDone, "backup")
        if done is not None:
            self.last_backup = done
            self.emit("backup", None, done)

    # --- staleness ------------------------------------------------------------
    def sweep(self, now: float | None = None) -> list[str]:
        """Mark agents whose heartbeat went stale as dead; returns their names."""
        now = time.time() if now is None else now
        dead = []
        for agent, view in self.presence.items():
            if view.alive and now - view.seen_at > self.cfg.stale_after_s:
                view.alive = False
                dead.append(agent)
                self.emit("presence", agent, view)
        return dead

    async def _watch_heartbeats(self) -> None:
        interval = max(0.1, min(1.0, self.cfg.stale_after_s / 4))
        while True:
            await asyncio.sleep(interval)
            self.sweep()


def status_from_presence(p: PresenceView) -> str | None:
    """The status a live heartbeat implies (the harness reports waiting/needs_login and
    waiting/rate_limit; working or idle means online); None when it says nothing about it."""
    if not p.alive:
        return None
    if p.state == "waiting":
        return {"needs_login": "needs_login", "rate_limit": "rate_limited"}.get(p.reason or "")
    return "online" if p.state in ("idle", "thinking", "compacting") else None


def normalize_status(status: str) -> str:
    """The harness reports the login flow's start as needs_login_started: needs_login. Cancelling it
    (needs_login_cancelled) says nothing about the agent's status: the agent's status stays what it was."""
    if status == "needs_login_cancelled":
        return status
    return "needs_login" if status.startswith("needs_login") else status


def _offer(client: Client, ev: SseEvent | None) -> None:
    """Queue without blocking; a client too slow to keep up is dropped and resumes."""
    if client.overflowed:
        return
    try:
        client.queue.put_nowait(ev)
    except asyncio.QueueFull:
        client.overflowed = True
        SSE_DROPPED.inc()
        # Make room for the end marker so the stream closes and the browser
        # reconnects with Last-Event-ID, replaying from the ring buffer.
        client.queue.get_nowait()
        client.queue.put_nowait(None)
