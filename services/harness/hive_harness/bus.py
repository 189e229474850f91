"""The agent's live state and its event bus (`Bus`).

Every state change goes through here so it is published as a LiveEvent on
`hive.agent.<me>.events`, stored in events.sqlite, and visible in `ctl.state`.

Events are written and published in batches (group commit): `emit` gives the
event the next id and queues it; one flusher task stores everything queued in
one transaction (WAL, synchronous=NORMAL), then publishes the batch in id order
with one `publish_many`, then takes what queued meanwhile. Ordering: ids,
rows and publications follow emit order. Durability: `emit` of anything but
the CLI's stream (`STREAM_KINDS`: text, thinking, tool use/result) returns only
once that event and every event before it are committed and published; so
`turn_end`, after which the loop acks the message, covers the whole turn, and a
crash loses at most the stream of the turn still running, which is redelivered
and runs again. `flush()` waits for everything queued (the service calls it
on stop).

Partial text (`text_delta`, from `--include-partial-messages`) is never stored:
`Typing` coalesces it on `hive.agent.<me>.typing`, at most one publication per
`TYPING_FLUSH_S` (~20 a second).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import structlog

from hive_harness import metrics
from hive_harness.store import EventStore
from hive_harness.streamjson import effective_context_window
from hivewire.service import encode_event
from hivewire.wire import ops
from hivewire.wire.agent import AgentState, LiveEvent, Typing
from hivewire.wire.op import Op

log = structlog.get_logger("hive_harness.bus")

DEFAULT_MODEL = "haiku"
SENTINEL = "rate-limited"
MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\[\]-]{0,99}$")
# the CLI's stream: queued without waiting for the commit (the next durable emit, or turn_end, covers them)
STREAM_KINDS = frozenset({"assistant_text", "thinking", "tool_use", "tool_result"})
MAX_QUEUED = 1024  # a stream emit waits for the flusher beyond this many queued events
TYPING_FLUSH_S = 0.05

T = TypeVar("T")
PublishMany = Callable[[Sequence[tuple[str, bytes]]], Awaitable[None]]


class Emit(Protocol):
    """Publishes an event of the contract: `MicroService.emit`, `HiveClient.emit`."""

    def __call__(self, op: Op[T, None], payload: T, **params: str) -> Awaitable[None]: ...


class Bus:
    def __init__(self, agent: str, state_dir: Path, store: EventStore, emit: Emit,
                 env_context_window: int | None, model_file: Path | None = None,
                 publish_many: PublishMany | None = None) -> None:
        self.agent = agent
        self.state_dir = state_dir
        self.store = store
        self._emit = emit
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
        self.on_status: Callable[[], Awaitable[None]] | None = None  # the service: publish presence now
        self._seq = 0
        self._publish_many = publish_many
        self._counters: dict[str, Any] = {}
        self._queued: list[LiveEvent] = []
        self._queued_done: asyncio.Future[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.typing = TypingPublisher(agent, self.publish)

    # --- events -------------------------------------------------------------------
    async def emit(self, kind: str, /, **payload: Any) -> LiveEvent | None:
        """Queue a LiveEvent (see the module doc for when this waits); `text_delta` goes to `typing`."""
        if kind == "text_delta":
            self.typing.add(str(payload.get("block", "")), str(payload.get("text", "")))
            return None
        if kind == "assistant_text":
            self.typing.end_block()
        self._seq += 1
        ev = LiveEvent(id=self._seq, ts=time.time(), kind=kind, payload=payload)  # type: ignore[arg-type]
        counter = self._counters.get(kind)
        if counter is None:  # `.labels()` per event was 8% of the ingest path
            counter = self._counters[kind] = metrics.EVENTS.labels(kind)
        counter.inc()
        self._queued.append(ev)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop(), name="events-flush")
        if kind not in STREAM_KINDS or len(self._queued) >= MAX_QUEUED:
            await self._wait_queued()
        return ev

    async def flush(self) -> None:
        """Return once every event emitted so far is stored and published."""
        if self._queued:
            await self._wait_queued()
        elif self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _wait_queued(self) -> None:
        if self._queued_done is None:
            self._queued_done = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._queued_done)  # a cancelled emitter does not cancel the batch

    async def _flush_loop(self) -> None:
        try:
            while self._queued:
                batch, done = self._queued, self._queued_done
                self._queued, self._queued_done = [], None
                try:
                    await self._store_batch(batch)
                    await self._publish_batch(batch)
                finally:
                    if done is not None and not done.done():
                        done.set_result(None)
        finally:
            self._flusher = None

    async def _store_batch(self, batch: list[LiveEvent]) -> None:
        if self.store.db is None:
            return  # broadcast-only
        try:
            shift = await self.store.append_many(batch)
        except Exception as exc:  # store trouble never stops the broadcast
            metrics.FAILURES.labels("events_store").inc()
            log.error("event_store_failed", error=str(exc), events=len(batch))
            return
        if shift:  # another writer took our ids: renumber, and continue after what it wrote
            metrics.FAILURES.labels("events_ids").inc()
            log.warning("event_ids_shifted", shift=shift)
            for ev in batch:
                ev.id += shift
            for ev in self._queued:
                ev.id += shift
            self._seq += shift

    async def publish(self, op: Op[T, None], payload: T) -> None:
        """Publish one of the agent's events (`ops.TURNS`, `ops.TYPING`, ...) under its name."""
        await self._emit(op, payload, agent=self.agent)

    async def _publish_batch(self, batch: list[LiveEvent]) -> None:
        try:
            if self._publish_many is not None:
                await self._publish_many([encode_event(ops.EVENTS, ev, agent=self.agent) for ev in batch])
            else:
                for ev in batch:
                    await self.publish(ops.EVENTS, ev)
        except Exception as exc:
            metrics.FAILURES.labels("events_publish").inc()
            log.error("event_publish_failed", error=str(exc), events=len(batch))

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
        await self._status_hook()

    async def announce(self, instance: str) -> None:
        """A new instance says where it stands, so nobody keeps a status from an earlier one."""
        st = self.snapshot()
        await self.emit("status_changed", status=st.status, reason=self.presence_reason or "harness_started",
                        instance=instance, model=self.model)

    async def _status_hook(self) -> None:
        if self.on_status is not None:
            try:
                await self.on_status()
            except Exception as exc:
                metrics.FAILURES.labels("presence_publish").inc()
                log.warning("presence_publish_failed", error=str(exc))

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


class TypingPublisher:
    """Coalesces text deltas into `Typing` publications: at most one per TYPING_FLUSH_S.

    The first delta after a quiet spell goes out at once; later ones wait for the
    interval to pass and go out together. `end_block` (the block's final text is
    being emitted) sends what is left first and drops any late delta of that block."""

    def __init__(self, agent: str, publish: Callable[[Op[Typing, None], Typing], Awaitable[None]],
                 instance: str = "") -> None:
        self.agent = agent
        self.instance = instance
        self._publish = publish
        self._block = ""
        self._offset = 0  # chars of the block already published
        self._buf: list[str] = []
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._ended: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.publications = 0

    def add(self, block: str, text: str) -> None:
        if not text or block in self._ended:
            return
        if block != self._block:
            self._send()
            self._block, self._offset = block, 0
        self._buf.append(text)
        if self._timer is not None:
            return
        wait = self._last + TYPING_FLUSH_S - time.monotonic()
        if wait <= 0:
            self._send()
        else:
            self._timer = asyncio.get_running_loop().call_later(wait, self._send)

    def end_block(self) -> None:
        self._send()
        if self._block:
            self._ended.add(self._block)
            if len(self._ended) > 64:
                self._ended = {self._block}

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buf:
            return
        text = "".join(self._buf)
        self._buf = []
        msg = Typing(block=self._block, offset=self._offset, text=text, instance=self.instance, ts=time.time())
        self._offset += len(text)
        self._last = time.monotonic()
        self.publications += 1
        task = asyncio.get_running_loop().create_task(self._out(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _out(self, msg: Typing) -> None:
        try:
            await self._publish(ops.TYPING, msg)
        except Exception as exc:
            metrics.FAILURES.labels("typing_publish").inc()
            log.warning("typing_publish_failed", error=str(exc))
