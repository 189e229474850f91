"""The NATS micro layer of hive-broker: decode, call the domain, commit, announce.

Every write runs as one job on broker.sqlite's batching writer (concurrent
sends share a transaction) and the reply goes out only after the commit.
Wakes and `hive.broker.changed` are published after the commit too.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from hive_broker import approvals, known, messages, metrics, questions, registry, reminders
from hive_broker.background import Background
from hive_broker.config import BrokerConfig
from hive_broker.dedup import ClientIds
from hive_broker.effects import Effects
from hive_broker.ledger_service import Ledger, ledger_path
from hive_broker.pending import PendingHints
from hive_broker.search_index import SearchIndex
from hive_broker.store import BrokerDatabase
from hive_broker.waiters import Waiters
from hivewire import codec, subjects
from hivewire.errors import HiveError
from hivewire.names import MANAGER, OPERATOR, validate_agent_name
from hivewire.service import BatchEndpoint, Context, Endpoint, MicroService, encode_event
from hivewire.settings import Settings
from hivewire.transport import Msg, Subscription, Transport
from hivewire.wire import broker as w
from hivewire.wire import ops
from hivewire.wire.common import Empty

log = structlog.get_logger("hive_broker")
T = TypeVar("T")
MAX_WAIT_S = 180.0


# Pure str -> str steps every send repeats for the same few agents: memoized (C-level
# lru_cache; bounded, and a bad name raises, which is never cached).
@functools.lru_cache(maxsize=4096)
def _caller(subject: str) -> str:
    """The calling agent: the third token of `hive.broker.<agent>.<verb>`, validated."""
    return validate_agent_name(subjects.token(subject, 2), allow_reserved=True)




class BrokerService(MicroService):
    name = "hive-broker"
    description = "Hive broker: inboxes, questions, reminders, approvals"

    def __init__(
        self, transport: Transport, settings: Settings, *, metrics_url: str = "", config: BrokerConfig | None = None
    ) -> None:
        super().__init__(transport, metrics_url=metrics_url)
        self.settings = settings
        self.config = config or BrokerConfig.from_env()
        self.db = BrokerDatabase(settings.broker_db, synchronous=self.config.sync)
        self.search = SearchIndex(settings.broker_search_db, settings.broker_db)
        self.client_ids = ClientIds(self.config.dedup_window_s, self.config.dedup_max)
        self.waiters = Waiters()
        self.pending = PendingHints()
        self.roster = known.Roster()  # loaded in on_prepare
        self.sends_counted = 0  # sends handled since start (the indexer yields while they pour in)
        self.background = Background(self)
        self.ledger = Ledger(self, ledger_path(settings.home))  # the cost ledger (own file and writer)
        self._presence_sub: Subscription | None = None
        self._deploy_sub: Subscription | None = None
        self._instances: dict[str, str] = {}
        self._pending_at_start: list[str] = []  # read once in on_prepare: the hints and the start-up wakes
        self.stopping = False

    def metadata(self) -> dict[str, str]:
        # the durability mode, for `nats micro info hive-broker` (see BrokerConfig.sync)
        return {**super().metadata(), "sync": self.config.sync.lower()}

    # --- lifecycle ------------------------------------------------------------------
    async def on_prepare(self) -> None:
        await self.db.open()  # first: it migrates broker.sqlite, which the index attaches
        await self.search.open()
        log.info("durability", sync=self.config.sync.lower())
        n = await self.db.write(lambda conn: self.client_ids.load(conn, time.time()))
        log.info("dedup_window_loaded", client_ids=n, window_s=self.config.dedup_window_s)
        self._pending_at_start = await self.db.write(messages.agents_with_pending)
        self.pending.load(self._pending_at_start)
        self.roster = await self.db.write(known.Roster.load)
        await self.ledger.open()

    async def on_start(self) -> None:
        self._presence_sub = await self.transport.subscribe(subjects.agent_pattern("presence"), self._on_presence)
        self._deploy_sub = await self.transport.subscribe(subjects.DEPLOYER_DEPLOY_ALL, self._on_deploy)
        # A wake lost to a crash between commit and publish is re-sent here.
        for agent in self._pending_at_start:
            await self._publish_wake(agent, "message", "")
        self.background.start()
        await self.ledger.start()

    async def on_stop(self) -> None:
        self.stopping = True
        self.waiters.notify_all()
        for sub in (self._presence_sub, self._deploy_sub):
            if sub is not None:
                await sub.unsubscribe()
        await self.background.stop()
        await self.ledger.stop()

    async def stop(self) -> None:
        await super().stop()
        await self.db.close()
        await self.search.close()
        await self.ledger.close()

    # --- plumbing -------------------------------------------------------------------
    def endpoints(self) -> list[Endpoint[Any] | BatchEndpoint[Any]]:
        of = Endpoint.of
        return [
            # sends arriving together share one write job and one commit (two, past first_turn)
            BatchEndpoint.of(ops.BROKER_SEND, self.send, first_turn=self.config.first_turn),
            of(ops.BROKER_RECV, self.recv),
            of(ops.BROKER_ACK, self.ack),
            of(ops.BROKER_ASK, self.ask),
            of(ops.BROKER_ANSWER, self.answer),
            of(ops.BROKER_LOOSE_ENDS, self.loose_ends),
            of(ops.BROKER_CANCEL_LOOSE_END, self.cancel_loose_end),
            of(ops.BROKER_REMIND, self.remind),
            of(ops.BROKER_APPROVE, self.approve),
            of(ops.BROKER_COUNTS, self.counts),
            of(ops.APPROVALS_LIST, self.op_approvals_list),
            of(ops.APPROVALS_RESOLVE, self.op_approvals_resolve),
            of(ops.QUESTIONS_LIST, self.op_questions_list),
            of(ops.QUESTIONS_ANSWER, self.op_questions_answer),
            of(ops.MESSAGES_LIST, self.op_messages_list),
            of(ops.MESSAGES_SEARCH, self.op_messages_search),
            of(ops.REGISTRY_UPSERT, self.registry_upsert),
            of(ops.REGISTRY_REMOVE, self.registry_remove),
            of(ops.REGISTRY_LIST, self.registry_list),
            *self.ledger.endpoints(),
        ]

    def on_error(self, endpoint: str, subject: str, code: str, err: HiveError | None) -> None:
        # latency and outcome per endpoint come from MicroService (hive_request_*{service="hive-broker"})
        metrics.ERRORS.labels(endpoint, code).inc()
        if err is not None:
            log.info("request_refused", endpoint=endpoint, subject=subject, code=code, error=err.message)

    @staticmethod
    def _agent(ctx: Context) -> str:
        return _caller(ctx.subject)

    async def _write(self, fn: Callable[[Any, Effects], T], weight: int = 1) -> T:
        """Run `fn(conn, effects)` in a write transaction, then announce its effects."""
        eff = Effects()
        result = await self.db.write(lambda conn: fn(conn, eff), weight=weight)
        await self.announce(eff)
        return result

    async def announce(self, eff: Effects) -> None:
        for agent in eff.put_back:
            self.pending.put_back(agent)
        for agent in eff.pollers:
            self.pending.added(agent)  # before the waiters look again
            self.waiters.notify(agent)
        out = [encode_event(ops.WAKE, w.Wake(reason=reason, ref=ref), agent=agent)  # type: ignore[arg-type]
               for agent, reason, ref in eff.wakes]
        for table, id_, op in eff.changes:
            if table == "known_agents":
                self.roster.apply(id_, op)
            out.append(encode_event(ops.BROKER_CHANGED, w.Changed(table=table, id=id_, op=op)))  # type: ignore[arg-type]
        if out:
            try:  # in one batch: a send publishes two of these
                await self.transport.publish_many(out)
            except Exception:  # then each on its own, so one bad notice costs only itself
                for subject, data in out:
                    await self._publish_raw(subject, data)
        for name, n in eff.counters.items():
            if name.startswith("redelivered:"):
                metrics.REDELIVERED.labels(name.split(":", 1)[1]).inc(n)
            elif name in _COUNTERS:
                _COUNTERS[name].inc(n)

    async def system_send(self, body: str, client_id: str) -> None:
        """A message from `broker` to the operator's inbox (the ledger's budget alerts); `client_id`
        makes a repeat within the dedup window a no-op."""
        req = w.SendRequest(to=OPERATOR, body=body, id=client_id)
        got = await self._write(lambda c, e: messages.send_many(c, e, self.client_ids, [("broker", req)], time.time(),
                                                                self.roster))
        if isinstance(got[0], Exception):
            raise got[0]

    async def _publish_wake(self, agent: str, reason: str, ref: str) -> None:
        await self._publish_raw(*encode_event(ops.WAKE, w.Wake(reason=reason, ref=ref), agent=agent))  # type: ignore[arg-type]

    async def _publish_raw(self, subject: str, data: bytes) -> None:
        """Publish one event encoded by `encode_event`, counting a failure instead of raising."""
        try:
            await self.transport.publish(subject, data)
        except Exception as exc:
            metrics.PUBLISH_FAILURES.inc()
            log.warning("publish_failed", subject=subject, error=str(exc))

    # --- agents ---------------------------------------------------------------------
    async def send(self, items: list[tuple[Context, w.SendRequest]]) -> list[w.SendReply | Exception]:
        """A batch of sends (see BatchEndpoint): one write job, then every reply."""
        senders: list[str | HiveError] = []
        for ctx, _ in items:
            try:
                senders.append(self._agent(ctx))
            except HiveError as err:
                senders.append(err)
        batch = [(s, req) for s, (_, req) in zip(senders, items, strict=True) if isinstance(s, str)]
        now = time.time()
        self.sends_counted += len(batch)
        roster, client_ids = self.roster, self.client_ids
        results = iter(await self._write(lambda c, e: messages.send_many(c, e, client_ids, batch, now, roster),
                                         weight=len(batch)) if batch else [])
        return [next(results) if isinstance(s, str) else s for s in senders]

    async def recv(self, ctx: Context, req: w.RecvRequest) -> w.RecvReply:
        agent = self._agent(ctx)
        if req.max < 1:
            raise HiveError("bad_request", "max must be at least 1")
        if not math.isfinite(req.wait_s) or req.wait_s < 0:
            raise HiveError("bad_request", "wait_s must be a non-negative number of seconds")
        if req.instance is not None and not (0 < len(req.instance) <= 200):
            raise HiveError("bad_request", "instance must be 1-200 characters")
        limit = min(req.max, messages.MAX_RECV)
        if req.reclaim and req.instance:
            instance = req.instance
            n = await self._write(lambda c, e: messages.reclaim_lost_reply(c, e, agent, instance))
            if n:
                log.info("recv_reclaimed", agent=agent, instance=instance, messages=n)
        deadline = time.monotonic() + min(req.wait_s, MAX_WAIT_S)
        while True:
            with self.waiters.waiting(agent) as woken:
                got = await self._recv_once(agent, limit, req.instance)
                remaining = deadline - time.monotonic()
                if got or remaining <= 0 or self.stopping:
                    return w.RecvReply(messages=got)
                try:
                    await asyncio.wait_for(woken.wait(), remaining)
                except TimeoutError:
                    pass

    async def _recv_once(self, agent: str, limit: int, instance: str | None) -> list[w.Message]:
        """One look at the agent's inbox: none at all when the hints say it is empty, and
        from the hints' floor, past the messages it already had."""
        if not self.pending.may_have(agent):
            return []
        generation, resets = self.pending.generation(agent), self.pending.resets(agent)  # before the query
        floor = self.pending.floor(agent)
        got = await self._write(lambda c, e: messages.recv(c, e, agent, limit, instance, time.time(), floor))
        if got:
            self.pending.delivered_upto(agent, int(got[-1].id), resets)
        if len(got) < limit:
            self.pending.drained(agent, generation)
        return got

    async def ack(self, ctx: Context, req: w.AckRequest) -> w.AckReply:
        agent = self._agent(ctx)
        n = await self._write(lambda c, e: messages.ack(c, e, agent, req.ids, time.time()))
        return w.AckReply(acked=n)

    async def ask(self, ctx: Context, req: w.AskRequest) -> w.AskReply:
        agent = self._agent(ctx)
        reply = await self._write(lambda c, e: questions.ask(c, e, agent, req, time.time()))
        self.background.kick()
        return reply

    async def answer(self, ctx: Context, req: w.AnswerRequest) -> w.AnswerReply:
        agent = self._agent(ctx)
        at = await self._write(lambda c, e: questions.answer(c, e, agent, req.question_id, req.answer, time.time()))
        return w.AnswerReply(question_id=req.question_id, answered_at=at)

    async def remind(self, ctx: Context, req: w.RemindRequest) -> w.RemindReply:
        agent = self._agent(ctx)
        reply = await self._write(lambda c, e: reminders.remind(c, e, agent, req, time.time()))
        self.background.kick()
        return reply

    async def approve(self, ctx: Context, req: w.ApproveRequest) -> w.ApproveReply:
        agent = self._agent(ctx)
        return await self._write(lambda c, e: approvals.request(c, e, agent, req, time.time()))

    async def loose_ends(self, ctx: Context, req: w.LooseEndsRequest) -> w.LooseEnds:
        agent = self._agent(ctx)
        scope = None if agent == MANAGER else agent

        def read(conn: Any) -> w.LooseEnds:
            return w.LooseEnds(
                approvals=approvals.pending_for(conn, scope),
                questions=questions.list_questions(conn, open_only=True, limit=500, agent=scope),
                reminders=reminders.pending(conn, scope),
            )

        return await self.db.read(read)

    async def cancel_loose_end(self, ctx: Context, req: w.CancelLooseEndRequest) -> w.CancelLooseEndReply:
        agent = self._agent(ctx)
        fn = {"approval": approvals.cancel, "question": questions.cancel, "reminder": reminders.cancel}[req.kind]
        await self._write(lambda c, e: fn(c, e, agent, req.id, time.time()))
        return w.CancelLooseEndReply(kind=req.kind, id=req.id)

    async def counts(self, ctx: Context, req: Empty) -> w.CountsReply:
        agent = self._agent(ctx)
        maybe_unread = self.pending.may_have(agent)

        def read(conn: Any) -> w.CountsReply:
            return w.CountsReply(
                unread=messages.counts_unread(conn, agent) if maybe_unread else 0,
                open_questions=questions.count_open(conn, agent),
                pending_reminders=reminders.count_pending(conn, agent),
            )

        return await self.db.read(read)

    # --- operator -------------------------------------------------------------------
    async def op_approvals_list(self, ctx: Context, req: w.ApprovalsListRequest) -> w.ApprovalsListReply:
        got = await self.db.read(lambda c: approvals.list_approvals(c, req.status, req.limit))
        return w.ApprovalsListReply(approvals=got)

    async def op_approvals_resolve(self, ctx: Context, req: w.ResolveRequest) -> w.Approval:
        return await self._write(
            lambda c, e: approvals.resolve(c, e, req.approval_id, req.decision, req.note, time.time())
        )

    async def op_questions_list(self, ctx: Context, req: w.QuestionsListRequest) -> w.QuestionsListReply:
        got = await self.db.read(lambda c: questions.list_questions(c, open_only=req.open_only, limit=req.limit))
        return w.QuestionsListReply(questions=got)

    async def op_questions_answer(self, ctx: Context, req: w.OperatorAnswerRequest) -> w.AnswerReply:
        at = await self._write(
            lambda c, e: questions.answer(c, e, OPERATOR, req.question_id, req.answer, time.time(), override=True)
        )
        return w.AnswerReply(question_id=req.question_id, answered_at=at)

    async def op_messages_list(self, ctx: Context, req: w.MessagesListRequest) -> w.MessagesListReply:
        return await self.db.read(lambda c: messages.list_messages(c, req))

    async def op_messages_search(self, ctx: Context, req: w.MessagesSearchRequest) -> w.MessagesListReply:
        messages.check_search(req)  # a bad query must not cost an indexing pass
        await self.background.index_messages()  # every message committed before now is searchable
        return await self.search.db.read(lambda c: messages.search(c, req))

    # --- registry (deployer) --------------------------------------------------------
    async def registry_upsert(self, ctx: Context, req: w.RegistryRequest) -> w.RegistryReply:
        changed = await self._write(lambda c, e: registry.upsert(c, e, req.name, time.time()))
        return w.RegistryReply(agents=await self.db.read(known.known_agents), changed=changed)

    async def registry_remove(self, ctx: Context, req: w.RegistryRequest) -> w.RegistryReply:
        changed = await self._write(lambda c, e: registry.remove(c, e, req.name, time.time()))
        return w.RegistryReply(agents=await self.db.read(known.known_agents), changed=changed)

    async def registry_list(self, ctx: Context, req: Empty) -> w.RegistryReply:
        return w.RegistryReply(agents=await self.db.read(known.known_agents))

    async def _on_presence(self, msg: Msg) -> None:
        from hivewire.wire.agent import Presence

        try:
            agent = validate_agent_name(subjects.token(msg.subject, 2), allow_reserved=True)
            p = codec.decode(msg.data, Presence)
            if self._instances.get(agent) == p.instance:
                return  # steady heartbeat: nothing to write
            n = await self._write(lambda c, e: registry.on_presence(c, e, agent, p, time.time()))
            self._instances[agent] = p.instance
            if n:
                log.info("redelivering_after_restart", agent=agent, instance=p.instance, messages=n)
        except HiveError as err:
            metrics.BAD_EVENTS.labels("presence").inc()
            log.warning("presence_ignored", subject=msg.subject, error=err.message)


    async def _on_deploy(self, msg: Msg) -> None:
        """The deployer finished an approved (or denied) approval: record deployed/failed."""
        from hivewire.wire.deployer import DeployEvent

        try:
            ev = codec.decode(msg.data, DeployEvent)
            if ev.approval_id is None:
                return
            aid = ev.approval_id
            await self._write(lambda c, e: approvals.record_outcome(c, e, aid, ev.outcome, ev.error, time.time()))
        except HiveError as err:
            metrics.BAD_EVENTS.labels("deploy").inc()
            log.warning("deploy_event_ignored", subject=msg.subject, error=err.message)


_COUNTERS = {
    "sent": metrics.SENT,
    "delivered": metrics.DELIVERED,
    "acked": metrics.ACKED,
    "duplicate": metrics.DUPLICATES,
    "reminder_fired": metrics.REMINDERS_FIRED,
    "expired": metrics.QUESTIONS_EXPIRED,
}


async def build(transport: Transport, settings: Settings, metrics_url: str) -> BrokerService:
    return BrokerService(transport, settings, metrics_url=metrics_url)

