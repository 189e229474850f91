"""The agent's live state and its event bus (seed 001's `Bus`).

Every state change goes through here so it is published as a LiveEvent on
`hive.agent.<me>.events`, stored in events.sqlite, and visible in `ctl.state`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from hive_harness import metrics
from hive_harness.store import EventStore
from hive_harness.streamjson import effective_context_window
from hivewire import subjects
from hivewire.wire.agent import AgentState, LiveEvent

log = structlog.get_logger("hive_harness.bus")

DEFAULT_MODEL = "haiku"
SENTINEL = "rate-limited"
MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\[\]-]{0,99}$")

Publish = Callable[[str, Any], Awaitable[None]]


class Bus:
    def __init__(self, agent: str, state_dir: Path, store: EventStore, publish: Publish,
                 env_context_window: int | None, model_file: Path | None = None) -> None:
        self.agent = agent
        self.state_dir = state_dir
        self.store = store
        self._publish = publish
        self.env_context_window = env_context_window
        self.model_file = model_file or state_dir / "model"
        self.model = self._load_model()
        self.status = "online"
        self.turn_state = "idle"
        self.turn_state_since = time.time()
        self.ctx: int | None = None
        self.cost: int | None = None
        self.api_context_window: int | None = None
        self.rate_limited = (state_dir / SENTINEL).exists()
        self.new_session = False
        self.login_url: str | None = None
        self.presence_reason: str | None = None
        self._seq = 0

    # --- events -------------------------------------------------------------------
    async def emit(self, kind: str, /, **payload: Any) -> LiveEvent:
        ts = time.time()
        event_id: int | None = None
        try:
            event_id = await self.store.append(ts, kind, payload)
        except Exception as exc:  # store trouble never stops the broadcast
            metrics.FAILURES.labels("events_store").inc()
            log.error("event_store_failed", error=str(exc))
        if event_id is None:
            self._seq += 1
            event_id = self._seq
        else:
            self._seq = max(self._seq, event_id)
        ev = LiveEvent(id=event_id, ts=ts, kind=kind, payload=payload)  # type: ignore[arg-type]
        metrics.EVENTS.labels(kind).inc()
        try:
            await self._publish(subjects.events(self.agent), ev)
        except Exception as exc:
            metrics.FAILURES.labels("events_publish").inc()
            log.error("event_publish_failed", error=str(exc))
        return ev

    async def init_seq(self) -> None:
        self._seq = await self.store.max_id()

    # --- state --------------------------------------------------------------------
    @property
    def context_window(self) -> int:
        return effective_context_window(self.api_context_window, self.env_context_window)

    async def set_turn_state(self, state: str) -> None:
        if state == self.turn_state:
            return
        self.turn_state, self.turn_state_since = state, time.time()
        await self.emit("turn_state_changed", state=state, since=self.turn_state_since)

    async def set_status(self, status: str, reason: str | None = None) -> None:
        self.presence_reason = reason
        metrics.NEEDS_LOGIN.set(1 if status == "needs_login" else 0)
        if status == self.status:
            return
        self.status = status
        await self.emit("status_changed", status=status, reason=reason)

    async def set_rate_limited(self, on: bool) -> None:
        sentinel = self.state_dir / SENTINEL
        metrics.RATE_LIMITED.set(1 if on else 0)
        if on:
            try:
                sentinel.write_text(f"{time.time()}\n")
            except OSError as exc:
                metrics.FAILURES.labels("sentinel").inc()
                log.error("sentinel_write_failed", error=str(exc))
        else:
            sentinel.unlink(missing_ok=True)
        was, self.rate_limited = self.rate_limited, on
        if on:
            await self.set_status("rate_limited", "rate_limit")
        elif was or self.status == "rate_limited":
            await self.set_status("online")

    def _load_model(self) -> str:
        try:
            m = self.model_file.read_text().strip()
            if MODEL_RE.fullmatch(m):
                return m
        except OSError:
            pass
        return DEFAULT_MODEL

    async def set_model(self, model: str) -> None:
        self.model = model
        try:
            self.model_file.parent.mkdir(parents=True, exist_ok=True)
            self.model_file.write_text(model + "\n")
        except OSError as exc:  # runtime override still applies; just won't survive a restart
            metrics.FAILURES.labels("model_file").inc()
            log.warning("model_persist_failed", error=str(exc))
        await self.emit("model_changed", model=model)

    async def record_usage(self, ctx: int | None, cost: int | None, api_window: int | None) -> None:
        if api_window:
            self.api_context_window = api_window
        if ctx is not None:
            self.ctx = ctx
            metrics.CTX.set(ctx)
        if cost is not None:
            self.cost = cost
        metrics.CONTEXT_WINDOW.set(self.context_window)
        await self.emit("token_usage_changed", ctx=self.ctx, cost=self.cost, context_window=self.context_window)

    def snapshot(self, unread: int = 0) -> AgentState:
        status = "rate_limited" if self.rate_limited and self.status == "online" else self.status
        return AgentState(
            status=status,  # type: ignore[arg-type]
            turn_state=self.turn_state,  # type: ignore[arg-type]
            turn_state_since=self.turn_state_since, model=self.model, ctx_tokens=self.ctx, cost_tokens=self.cost,
            context_window=self.context_window, rate_limited=self.rate_limited, unread=unread,
            login_url=self.login_url,
        )
