"""The turn loop: wake → one message → one CLI turn → ack.

Handles context watermarks (reactive compaction on prompt-too-long, proactive
at 75%, fresh session at 50% after a long idle or a compaction that did not
help), rate limits (flag + sentinel + park + retry of the held message),
missing credentials (needs_login until credentials appear) and cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field

import structlog

from hive_harness import liveness, metrics
from hive_harness.agent_cli import CliConfig, CliRun, agent_cmd, run_turn
from hive_harness.budget import Guard
from hive_harness.bus import Bus
from hive_harness.signals import CliSignals, Plan
from hive_harness.store import TurnStatsStore
from hive_harness.streamjson import TurnSummary
from hive_harness.watchers import Watchers
from hivewire import config
from hivewire.service import HiveClient
from hivewire.wire import broker as wb
from hivewire.wire import ops
from hivewire.wire.agent import TurnStats
from hivewire.wire.common import Empty

log = structlog.get_logger("hive_harness.loop")

COMPACT_AT = 0.75
RESET_AT = 0.50
MAX_FAILED_ATTEMPTS = 3
CLI_RECHECK_S = 5.0  # how often a harness without its agent binary looks again


def missing_binary(argv: list[str]) -> str | None:
    """The agent command's binary if it cannot be run, else None."""
    cmd = argv[0] if argv else ""
    if os.sep in cmd:
        return None if os.access(cmd, os.X_OK) and os.path.isfile(cmd) else cmd
    return None if cmd and shutil.which(cmd) else (cmd or "<empty HIVE_AGENT_CMD>")


@dataclass
class WakeItem:
    wake_from: str
    prompt: str
    message: wb.Message | None = None
    attempts: int = 0
    extra: dict[str, object] = field(default_factory=dict)


# What put a message in the inbox (broker `Message.kind`) → the turn's wake_from.
KIND_WAKE = {"reminder": "reminder", "answer": "answer", "expired": "answer", "approval": "approval"}


def wake_from(msg: wb.Message) -> str:
    """`reminder` / `answer` / `approval` for the broker's own deliveries, else the sender."""
    return KIND_WAKE.get(msg.kind, msg.sender)


def wake_prompt(msg: wb.Message, unread_more: int) -> str:
    kind = KIND_WAKE.get(msg.kind)
    if kind == "reminder":
        head = f"[wake: reminder {msg.in_reply_to or ''} is due · id {msg.id}"
    elif kind is not None:
        about = f" to question {msg.in_reply_to}" if kind == "answer" and msg.in_reply_to else ""
        head = f"[wake: {msg.kind}{about} from {msg.sender} · id {msg.id}"
    else:
        head = f"[wake: message from {msg.sender} · id {msg.id}"
    head += f" · {unread_more} more unread]" if unread_more else "]"
    if msg.redelivered:
        head += " [redelivered after restart — may already be handled]"
    reply = f'\n\n(Reply with mcp__hive__send(to="{msg.sender}", in_reply_to="{msg.id}") if a reply is needed.)'
    needs_hint = kind is None and msg.sender != "operator"
    return f"{head}\n\n{msg.body}{reply if needs_hint else ''}"


class TurnLoop(Watchers):
    def __init__(self, bus: Bus, cli: CliConfig, client: HiveClient, stats: TurnStatsStore) -> None:
        self.bus = bus
        self.cli = cli
        self.client = client
        self.stats = stats
        self.agent = bus.agent
        self.wake = asyncio.Event()
        self.prompts: asyncio.Queue[str] = asyncio.Queue()
        self.pending: WakeItem | None = None
        self.current: CliRun | None = None
        self.compact_requested = False
        self.last_turn_end = time.time()
        self.park_s = config.RATE_LIMIT_PARK_S.get()
        self.idle_reset_s = config.IDLE_RESET_S.get()
        self.poll_s = config.WAKE_POLL_S.get()
        self.parked_until = 0.0
        self.rate_limited_until: float | None = None  # unix s, while parked for a usage limit
        self.jitter_s = config.RATE_LIMIT_JITTER_S.get()
        self.stall = liveness.StallConfig.from_env()
        self.plan = Plan()  # the CLI's latest usage-limit windows
        self.last_signals = CliSignals()
        self.login_reason: str | None = None  # no_credentials | token_expired | auth_failed
        self.login_creds: str | None = None  # the credentials that failed: wait for others
        self.tools_missing: list[str] = []
        self.cli_missing: str | None = None
        self.turns_done = 0
        self.received: list[str] = []  # ids the agent took itself with its recv tool: acked after the turn
        self._recv_failed = False  # the last recv got no reply: the next one reclaims (broker RecvRequest)
        self.guard: Guard | None = None  # budget gate + runaway breaker (hive_harness.budget)

    def note_received(self, ids: list[str]) -> None:
        self.received.extend(ids)

    # --- wake sources -----------------------------------------------------------
    def on_wake(self, w: wb.Wake) -> None:
        self.wake.set()

    def on_prompt(self, text: str) -> None:
        self.prompts.put_nowait(text)
        self.wake.set()

    async def _next(self) -> WakeItem | None:
        if self.pending is not None:
            item, self.pending = self.pending, None
            return item
        if not self.prompts.empty():
            return WakeItem("operator", f"[wake: operator prompt]\n\n{self.prompts.get_nowait()}")
        # A wake is only a doorbell: every wake the broker publishes comes with an inbox
        # message (answers, reminders and approvals too), so recv is the one source of work;
        # a wake whose message an earlier recv already took starts no turn.
        self.wake.clear()
        try:
            # the instance goes with recv: the broker then never puts what this instance
            # holds back for "a new instance" when our first heartbeat lands after it
            # reclaim: the previous recv failed, so a message it took may be in flight to us
            # with its reply lost (a partition, a timeout); nothing is held here between turns
            req = wb.RecvRequest(max=1, wait_s=0, instance=self.cli.instance or None, reclaim=self._recv_failed)
            reply = await self.client.request(ops.BROKER_RECV, req, agent=self.agent)
            self._recv_failed = False
        except Exception as exc:  # broker away: retry later
            self._recv_failed = True
            metrics.FAILURES.labels("recv").inc()
            log.warning("recv_failed", error=str(exc))
            reply = None
        if reply and reply.messages:
            msg = reply.messages[0]
            counts = await self._counts()
            return WakeItem(wake_from(msg), wake_prompt(msg, counts.unread if counts else 0), msg)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), self.poll_s)
        return None

    async def _counts(self) -> wb.CountsReply | None:
        try:
            return await self.client.request(ops.BROKER_COUNTS, Empty(), agent=self.agent, timeout=2.0)
        except Exception:  # best effort
            return None

    # --- the loop -----------------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop never dies
                metrics.FAILURES.labels("loop").inc()
                log.exception("loop_error")
                await self.bus.emit("error", kind="harness", text=str(exc))
                await asyncio.sleep(1.0)

    async def _step(self) -> None:
        if await self._agent_cli_missing():
            return
        if self.bus.status == "needs_login":
            if not self._login_changed():
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), 2.0)
                return
            self.bus.login_url = None
            self.login_reason = self.login_creds = None
            await self.bus.set_status("online")
        if self.parked_until:
            delay = self.parked_until - time.time()
            if delay > 0:
                await asyncio.sleep(min(delay, 1.0))
                return
            self.parked_until = 0.0
            self.rate_limited_until = None
            self.bus.presence_reason = None
        if self.compact_requested:
            self.compact_requested = False
            await self.compact("operator")
            return
        if self.guard is not None and await self.guard.blocked():
            return  # over budget or a runaway: take nothing, messages stay pending
        item = await self._next()
        if item is not None:
            await self.handle(item)

    async def _agent_cli_missing(self) -> bool:
        """No agent binary: take no message (they wait unread), say why, look again soon."""
        missing = missing_binary(agent_cmd())
        if missing is None:
            if self.cli_missing is not None:
                self.cli_missing = None
                await self.bus.emit("note", text="agent CLI found: resuming")
            return False
        if self.cli_missing != missing:
            self.cli_missing = missing
            metrics.FAILURES.labels("cli_missing").inc()
            log.error("agent_cli_missing", cmd=missing)
            await self.bus.emit("error", kind="agent_cli_missing",
                                text=f"agent CLI {missing!r} not found (install it or set HIVE_AGENT_CMD); "
                                     "messages wait unread")
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), CLI_RECHECK_S)
        return True

    async def handle(self, item: WakeItem) -> None:
        if (self.bus.ctx is not None and time.time() - self.last_turn_end > self.idle_reset_s
                and self.bus.ctx >= RESET_AT * self.bus.context_window and not self.bus.new_session):
            self.bus.new_session = True
            await self.bus.emit("note", text="idle past the prompt cache with ctx ≥ 50%: starting a fresh session")
        summary, kind = await self._turn(item)
        if kind == "prompt_too_long":
            metrics.COMPACTIONS.labels("reactive").inc()
            if not await self.compact("reactive"):
                # the session cannot be shrunk: retrying it with --continue would only fail again
                self.bus.new_session = True
                await self.bus.emit("note", text="compaction failed: the retry starts a fresh session")
            summary, kind = await self._turn(item)
            if kind == "prompt_too_long":
                metrics.FAILURES.labels("prompt_too_long").inc()
                await self.bus.emit("error", kind="prompt_too_long",
                                    text="prompt still too long after compaction: message dropped")
        if kind == "rate_limited":
            metrics.RATE_LIMIT_HITS.inc()
            await self.bus.set_rate_limited(True)
            self.pending = item
            until, why = self._park_until(self.last_signals)
            self.parked_until = self.rate_limited_until = until
            await self.bus.emit("note", text=f"rate limited: parked for {until - time.time():.0f}s ({why}), "
                                "message requeued", until=until)
            return
        if kind == "failed" and summary.auth_failed:
            self.login_reason = ("no_credentials" if not self.cli.has_credentials()
                                 else self.last_signals.auth_reason or "auth_failed")
            self.login_creds = self.cli.credentials_fingerprint()
            metrics.FAILURES.labels("needs_login").inc()
            await self.bus.set_status("needs_login", "needs_login")
            self.pending = item
            await self.bus.emit("note", text=f"the agent CLI needs a login ({self.login_reason})",
                                reason=self.login_reason)
            return
        if kind == "failed":
            item.attempts += 1
            if item.attempts < MAX_FAILED_ATTEMPTS:
                self.pending = item
                await asyncio.sleep(min(2.0 * item.attempts, 10.0))
                return
            await self.bus.emit("error", kind="turn_failed", text=f"giving up after {item.attempts} attempts")
        if kind == "ok" and self.bus.rate_limited:
            await self.bus.set_rate_limited(False)
        await self._ack(item)
        if (kind == "ok" and self.bus.ctx is not None
                and self.bus.ctx >= COMPACT_AT * self.bus.context_window):
            metrics.COMPACTIONS.labels("proactive").inc()
            await self.compact("proactive")
            if self.bus.ctx is not None and self.bus.ctx >= RESET_AT * self.bus.context_window:
                self.bus.new_session = True
                await self.bus.emit("note", text="compaction left ctx ≥ 50%: next turn starts a fresh session")

    async def _ack(self, item: WakeItem) -> None:
        ids = [item.message.id] if item.message else []
        ids += [i for i in self.received if i not in ids]
        self.received = []
        if not ids:
            return
        try:
            await self.client.request(ops.BROKER_ACK, wb.AckRequest(ids=ids), agent=self.agent)
        except Exception as exc:  # unacked comes back redelivered; log it
            metrics.FAILURES.labels("ack").inc()
            log.error("ack_failed", ids=ids, error=str(exc))

    async def _turn(self, item: WakeItem) -> tuple[TurnSummary, str]:
        cont = not self.bus.new_session
        if self.bus.new_session:
            self.bus.new_session = False
            await self.bus.emit("note", text="new session: this turn runs without --continue")
        counts = await self._counts()
        started = time.time()
        model = self.bus.model
        await self.bus.emit("turn_start", wake_from=item.wake_from, unread=counts.unread if counts else 0,
                            prompt=item.prompt, model=model, message_id=item.message.id if item.message else None)
        await self.bus.set_turn_state("thinking")
        run = self.current = CliRun(progress=liveness.Progress(self.stall), on_init=self._check_tools)
        assert run.progress is not None
        watch = asyncio.create_task(liveness.watch(run.progress, lambda: run.pid,
                                                   lambda st, idle: self._on_liveness(run, st, idle)))
        try:
            summary = await run_turn(self.cli, model, item.prompt, cont, run, self._on_events)
        except Exception as exc:  # e.g. the binary is missing
            metrics.FAILURES.labels("cli_spawn").inc()
            log.error("cli_failed", error=str(exc))
            summary = TurnSummary(is_error=True, result_text=f"cannot run the agent CLI: {exc}")
        finally:
            self.current = None
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        self.last_signals = run.signals
        self.plan.update(run.signals.rate_limit)
        kind = self._classify(summary, run)
        ended = time.time()
        await self.bus.set_turn_state("idle")
        await self.bus.record_usage(summary.ctx, summary.cost if summary.got_result else None,
                                    summary.api_context_window)
        counts = await self._counts()
        note = None if kind == "ok" else (summary.result_text or "\n".join(run.stderr_tail[-5:]) or None)
        if run.stalled_out:
            note = f"stalled: no progress for {self.stall.kill_s:g}s, cancelled"
        elif run.tools_missing:
            note = f"hive tools missing from the CLI: {', '.join(run.tools_missing)}"
        row = TurnStats(
            agent=self.agent, model=summary.model or model, wake_from=item.wake_from, result_kind=kind,  # type: ignore[arg-type]
            started_at=started, ended_at=ended, duration_ms=int((ended - started) * 1000),
            input_tokens=summary.cumulative.input_tokens, output_tokens=summary.cumulative.output_tokens,
            cache_read_input_tokens=summary.cumulative.cache_read_input_tokens,
            cache_creation_input_tokens=summary.cumulative.cache_creation_input_tokens,
            last_input_tokens=summary.last.input_tokens, last_output_tokens=summary.last.output_tokens,
            last_cache_read_input_tokens=summary.last.cache_read_input_tokens,
            last_cache_creation_input_tokens=summary.last.cache_creation_input_tokens,
            context_window=self.bus.context_window, tool_call_count=summary.tool_call_count,
            tool_calls_json=json.dumps(summary.tool_calls, sort_keys=True),
            open_threads_count=counts.open_questions if counts else 0,
            open_reminders_count=counts.pending_reminders if counts else 0, note=note,
            cost_usd=summary.cost_usd, model_costs=summary.model_costs, turn_id=uuid.uuid4().hex,
        )
        await self.stats.record(row)
        if self.guard is not None:
            self.guard.turn_done(row)
        await self._publish_turn(row, summary)
        self.last_turn_end = ended
        self.turns_done += 1
        await self.bus.emit("turn_end", result_kind=kind, duration_ms=row.duration_ms, ctx=summary.ctx,
                            cost=summary.cost, note=note)
        return summary, kind

    async def _publish_turn(self, row: TurnStats, summary: TurnSummary) -> None:
        metrics.TURNS.labels(row.result_kind).inc()
        metrics.TURN_SECONDS.observe(row.duration_ms / 1000)
        for k in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
            metrics.TOKENS.labels(k).inc(getattr(summary.cumulative, k))
        for name, n in summary.tool_calls.items():
            metrics.TOOL_CALLS.labels(metrics.tool_label(name)).inc(n)
        try:
            await self.bus.publish(ops.TURNS, row)
        except Exception:
            metrics.FAILURES.labels("turns_publish").inc()

    @staticmethod
    def _classify(s: TurnSummary, run: CliRun) -> str:
        if run.stalled_out or run.tools_missing:
            return "failed"  # a failed attempt: the message is retried (up to MAX_FAILED_ATTEMPTS)
        if run.cancelled:
            return "cancelled"
        if s.prompt_too_long:
            return "prompt_too_long"
        if s.rate_limited and (s.is_error or not s.got_result):
            return "rate_limited"
        if not s.got_result or s.is_error or (run.returncode not in (0, None)):
            return "failed"
        return "ok"

    async def _on_events(self, drafts: list[tuple[str, dict[str, object]]]) -> None:
        for kind, payload in drafts:
            await self.bus.emit(kind, **payload)

    async def compact(self, trigger: str) -> bool:
        """Run `/compact` on the current session (always with --continue); True if it compacted."""
        await self.bus.emit("note", text=f"compacting ({trigger})")
        await self.bus.set_turn_state("compacting")
        run = self.current = CliRun()
        try:
            summary = await run_turn(self.cli, self.bus.model, "/compact", True, run, self._on_events)
        except Exception as exc:
            metrics.FAILURES.labels("compact").inc()
            summary = TurnSummary(is_error=True, result_text=str(exc))
        finally:
            self.current = None
            await self.bus.set_turn_state("idle")
        if summary.compacted:
            await self.bus.record_usage(summary.post_compact_tokens, None, summary.api_context_window)
            await self.bus.emit("note", text=f"compaction done ({trigger})")
            return True
        metrics.FAILURES.labels("compact").inc()
        await self.bus.emit("error", kind="compact_failed", text=summary.result_text[:500])
        return False

    async def cancel(self) -> bool:
        run = self.current
        if run is None:
            return False
        await run.cancel()
        return True
