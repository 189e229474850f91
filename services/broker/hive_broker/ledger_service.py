"""The cost ledger inside hive-broker: JetStream in, ledger.sqlite, budgets (docs/costs.md).

Why the broker: it is the one always-on, single-instance owner of the swarm's
state, and no agent works without it (no broker, no messages, no turns), so a
budget check that asks it adds no new way for agents to stop. The ledger has
its own file (`HIVE_HOME/ledger.sqlite`) and its own writer thread, so it never
queues behind message traffic on broker.sqlite's writer.

Turn rows arrive on the `HIVE_LEDGER` JetStream stream (created here,
idempotently: `hive.agent.*.ledger` and `hive.session.ledger`), read with the
durable pull consumer `ledger` (explicit acks): a batch is committed, then each
of its messages acked, so a crash before the commit redelivers it and the turn-id key
makes a redelivered row count once. The agent is the subject's token, never
the row's own `agent` field. After each batch, budgets that crossed 80% or 100%
this period send one operator-inbox message each (`budget_alerts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any, Protocol

import structlog
from prometheus_client import Counter, Gauge

from hive_broker import known, ledger
from hive_broker.store import BrokerDatabase
from hivewire import codec, subjects
from hivewire.db import Database
from hivewire.errors import HiveError
from hivewire.names import validate_agent_name
from hivewire.service import Context, Endpoint, encode_event
from hivewire.transport import Transport
from hivewire.wire import broker as w
from hivewire.wire import ops
from hivewire.wire.agent import TurnStats
from hivewire.wire.common import Empty, Ok

log = structlog.get_logger("hive_broker.ledger")

INGESTED = Counter("hive_ledger_turns_ingested_total", "Turn rows added to the ledger.")
DUPLICATES = Counter("hive_ledger_duplicate_turns_total", "Turn rows delivered again and counted once.")
BAD_ROWS = Counter("hive_ledger_bad_rows_total", "Stream messages that were not turn rows (skipped).")
FAILURES = Counter("hive_ledger_failures_total", "Ledger failure paths, by where.", ["where"])
SPEND_USD = Counter("hive_ledger_spend_usd_total", "Dollars ingested, by model.", ["model"])
BUDGET_RATIO = Gauge("hive_ledger_budget_used_ratio",
                     "Share of a budget used this period (1 = at the budget), by scope (agent or `swarm`).",
                     ["scope"])
ALERTS = Counter("hive_ledger_budget_alerts_total", "Operator-inbox budget alerts sent, by level.", ["level"])

FETCH_BATCH = 512
FETCH_WAIT_S = 1.0
STREAM_MAX_AGE_S = 30 * 86400
ACK_WAIT_S = 10.0  # a fetched row not acked by then (its process died) is delivered again


def ledger_path(home: Path) -> Path:
    return home / "ledger.sqlite"


class Broker(Protocol):
    """What the ledger needs of the broker service (which is one; this module sits
    below the service and never imports it)."""

    @property
    def transport(self) -> Transport: ...
    @property
    def db(self) -> BrokerDatabase: ...

    async def system_send(self, body: str, client_id: str) -> None: ...
    async def _publish_wake(self, agent: str, reason: str, ref: str) -> None: ...
    async def _publish_raw(self, subject: str, data: bytes) -> None: ...


class Ledger:
    def __init__(self, broker: Broker, path: Path) -> None:
        self.broker = broker
        self.db = Database(path, ledger.MIGRATIONS, label="ledger")
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()  # the stream and consumer exist

    async def open(self) -> None:
        await self.db.open()

    async def start(self) -> None:
        self.task = asyncio.create_task(self._consume(), name="ledger-consume")

    async def stop(self) -> None:
        if self.task is not None:
            from hivewire.tasks import cancel_and_wait

            await cancel_and_wait(self.task)
            self.task = None

    async def close(self) -> None:
        await self.db.close()

    def endpoints(self) -> list[Endpoint[Any]]:
        return [
            Endpoint.of(ops.BROKER_SPEND, self.h_spend),
            Endpoint.of(ops.LEDGER_COSTS, self.h_costs),
            Endpoint.of(ops.BUDGET_SET, self.h_budget_set),
            Endpoint.of(ops.BUDGET_SHOW, self.h_budget_show),
            Endpoint.of(ops.BUDGET_CLEAR, self.h_budget_clear),
        ]

    # --- JetStream in ---------------------------------------------------------------
    async def ensure_stream(self, js: Any) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

        cfg = StreamConfig(name=subjects.LEDGER_STREAM, subjects=list(subjects.LEDGER_STREAM_SUBJECTS),
                           retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
                           max_age=STREAM_MAX_AGE_S, duplicate_window=120.0)
        try:
            await js.stream_info(subjects.LEDGER_STREAM)
        except Exception:  # not there yet (NotFoundError): create it
            await js.add_stream(cfg)
        # Explicit acks, each after its batch committed. Not ack-all: after a kill -9 the dead
        # process's fetched-but-uncommitted messages are still pending, and acking a later
        # message would ack them too (lost turns, seen in tests/broker/test_ledger_crash.py).
        consumer = ConsumerConfig(durable_name=subjects.LEDGER_CONSUMER, ack_policy=AckPolicy.EXPLICIT,
                                  ack_wait=ACK_WAIT_S, max_ack_pending=-1)
        try:
            await js.add_consumer(subjects.LEDGER_STREAM, consumer)
        except Exception as exc:  # an older config: start it over (the turn-id key drops what comes again)
            log.warning("ledger_consumer_recreated", error=str(exc))
            await js.delete_consumer(subjects.LEDGER_STREAM, subjects.LEDGER_CONSUMER)
            await js.add_consumer(subjects.LEDGER_STREAM, consumer)

    async def _consume(self) -> None:
        nc = getattr(self.broker.transport, "nc", None)
        if nc is None:  # a MemoryTransport: no JetStream, nothing arrives
            log.info("ledger_without_jetstream")
            return
        js = nc.jetstream()
        delay = 0.5
        while True:
            try:
                await self.ensure_stream(js)
                psub = await js.pull_subscribe_bind(durable=subjects.LEDGER_CONSUMER, stream=subjects.LEDGER_STREAM)
                self.ready.set()
                log.info("ledger_consuming", stream=subjects.LEDGER_STREAM)
                delay = 0.5
                while True:
                    try:
                        msgs = await psub.fetch(FETCH_BATCH, timeout=FETCH_WAIT_S)
                    except TimeoutError:
                        continue
                    if msgs:
                        await self.take(msgs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # JetStream away (server restart): set up again
                FAILURES.labels("consume").inc()
                log.warning("ledger_consume_failed", error=str(exc), retry_s=delay)
                self.ready.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def decode(self, msg: Any) -> tuple[Any, ...] | None:
        try:
            agent = "" if msg.subject == subjects.SESSION_LEDGER else validate_agent_name(
                subjects.token(msg.subject, 2), allow_reserved=True)
            row = codec.decode(msg.data, TurnStats)
            return ledger.row_values(agent, row, int(msg.metadata.sequence.stream))
        except Exception as exc:
            BAD_ROWS.inc()
            log.warning("ledger_bad_row", subject=msg.subject, error=str(exc))
            return None

    async def take(self, msgs: list[Any]) -> int:
        """Commit a fetched batch, then ack it."""
        values = [v for v in map(self.decode, msgs) if v is not None]
        now = time.time()
        agents = {v[1] for v in values if v[1]}

        def job(conn: Any) -> tuple[int, list[w.BudgetStatus]]:
            added = ledger.ingest(conn, values)
            return added, ledger.new_alerts(conn, agents, now) if added else []

        added, alerts = await self.db.write(job, weight=max(1, len(values)))
        await self.ack(msgs)
        INGESTED.inc(added)
        DUPLICATES.inc(len(values) - added)
        for v in values:
            for model, usd in json.loads(v[8]).items() if v[8] != "{}" else [(v[3], v[6])]:
                if usd > 0:
                    SPEND_USD.labels(model).inc(usd)
        if added:
            await self._gauges(now)
        for st in alerts:
            await self._alert(st)
        return added

    async def ack(self, msgs: list[Any]) -> None:
        """Ack each message of a committed batch, queued as one write to the server."""
        nc = self.broker.transport.nc  # type: ignore[attr-defined]
        for m in msgs:
            await nc.publish(m.reply, b"+ACK")  # what msg.ack() sends, minus its per-message checks

    async def _gauges(self, now: float) -> None:
        try:
            for st in await self.db.read(lambda c: [ledger.status(c, b, now) for b in ledger.get_budgets(c)]):
                BUDGET_RATIO.labels(st.budget.agent or "swarm").set(st.fraction)
        except Exception as exc:
            FAILURES.labels("gauges").inc()
            log.warning("ledger_gauges_failed", error=str(exc))

    async def _alert(self, st: w.BudgetStatus) -> None:
        b = st.budget
        who = f"agent {b.agent}" if b.agent else "the swarm"
        limit = " and ".join(x for x in (f"${b.usd:g}" if b.usd is not None else "",
                                         f"{b.tokens} tokens" if b.tokens is not None else "") if x)
        when = time.strftime("%Y-%m-%d", time.gmtime(st.period_start))
        body = (f"[budget] {who} has used {st.fraction:.0%} of its {limit} per {b.per} budget "
                f"(period from {when} UTC: ${st.spent_usd:.4f}, {st.spent_tokens} tokens)."
                + (" It is parked until the budget is raised or cleared, or the next period."
                   if st.fraction >= 1.0 else ""))
        cid = f"budget-{b.agent or 'swarm'}-{int(st.period_start)}-{int(st.fraction * 100)}"
        try:
            await self.broker.system_send(body, cid)
            ALERTS.labels(f"{st.fraction:g}").inc()
        except Exception as exc:
            FAILURES.labels("alert").inc()
            log.error("budget_alert_failed", scope=b.agent or "swarm", error=str(exc))

    # --- requests -------------------------------------------------------------------
    async def h_spend(self, ctx: Context, req: Empty) -> w.SpendReply:
        agent = validate_agent_name(ctx.token(2), allow_reserved=True)
        now = time.time()
        return w.SpendReply(agent=agent, budgets=await self.db.read(lambda c: ledger.for_agent(c, agent, now)))

    async def h_costs(self, ctx: Context, req: w.CostsRequest) -> w.CostsReply:
        if req.agent is not None:
            validate_agent_name(req.agent, allow_reserved=True)
        return await self.db.read(lambda c: ledger.costs(c, req))

    @staticmethod
    def _scope(agent: str | None, swarm: bool) -> str:
        if swarm == (agent is not None):
            raise HiveError("bad_request", "name an agent or --swarm (one of them)")
        return ledger.SWARM if swarm else validate_agent_name(agent or "", allow_reserved=True)

    async def h_budget_set(self, ctx: Context, req: w.BudgetSetRequest) -> w.BudgetStatus:
        scope = self._scope(req.agent, req.swarm)
        if req.usd is None and req.tokens is None:
            raise HiveError("bad_request", "a budget needs --usd or --tokens")
        if (req.usd is not None and not 0 <= req.usd < 1e9) or (req.tokens is not None and req.tokens < 0):
            raise HiveError("bad_request", "budgets are non-negative numbers")
        now = time.time()
        st = await self.db.write(lambda c: ledger.status(c, ledger.set_budget(c, scope, req, now), now))
        log.info("budget_set", scope=scope, usd=req.usd, tokens=req.tokens, per=req.per)
        BUDGET_RATIO.labels(st.budget.agent or "swarm").set(st.fraction)
        await self._changed(scope)
        return st

    async def h_budget_show(self, ctx: Context, req: Empty) -> w.BudgetShowReply:
        now = time.time()
        return w.BudgetShowReply(budgets=await self.db.read(
            lambda c: [ledger.status(c, b, now) for b in ledger.get_budgets(c)]))

    async def h_budget_clear(self, ctx: Context, req: w.BudgetClearRequest) -> Ok:
        scope = self._scope(req.agent, req.swarm)
        gone = await self.db.write(lambda c: ledger.clear_budget(c, scope))
        if gone:
            log.info("budget_cleared", scope=scope)
            with contextlib.suppress(KeyError):
                BUDGET_RATIO.remove("swarm" if scope == ledger.SWARM else scope)
            await self._changed(scope)
        return Ok(ok=gone)

    async def _changed(self, scope: str) -> None:
        """A budget changed: wake the agents it touches, so a parked one looks again now."""
        agents = await self.broker.db.read(known.known_agents) if scope == ledger.SWARM else [scope]
        for agent in agents:
            await self.broker._publish_wake(agent, "system", "budget")
        await self.broker._publish_raw(*encode_event(ops.BROKER_CHANGED, w.Changed(table="budgets", id=scope,
                                                                                      op="update")))
