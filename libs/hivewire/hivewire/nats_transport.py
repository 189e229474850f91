"""`Transport` over a real nats-server, with NATS micro service registration."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from typing import Any

import nats
import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg as NatsMsg
from nats.micro import add_service
from nats.micro.service import Service, ServiceConfig, ServiceVerb, control_subject
from prometheus_client import Counter

from hivewire import tls
from hivewire.errors import HiveError
from hivewire.natsauth import Credentials, resolve_credentials
from hivewire.tasks import cancel_and_wait
from hivewire.transport import (
    BAD_SUBJECT,
    BatchEndpointSpec,
    Batcher,
    Handler,
    Msg,
    Reply,
    RequestHandler,
    ServiceSpec,
    Subscription,
    _TaskSet,
)

log = structlog.get_logger("hivewire.nats")

NATS_EVENTS = Counter(
    "hive_nats_connection_events_total", "NATS connection events (disconnect, reconnect, error).", ["event"]
)


async def connect_nats(
    servers: list[str] | str,
    name: str,
    *,
    forever: bool = True,
    user_credentials: str | None = None,
    timeout: float = 2.0,
    credentials: Credentials | None = None,
) -> Client:
    """Connect, retrying with backoff; once connected, reconnect forever.

    With `forever=False` (CLI commands) a first failure raises `unavailable`
    instead, so a person at a terminal gets an answer, not a hang.
    `servers` may list several URLs (comma-separated). The NATS identity is
    `credentials`, else what the environment names (`HIVE_NATS_CREDS`,
    `HIVE_NATS_USER`/`HIVE_NATS_PASSWORD`, `HIVE_NATS_INBOX_PREFIX`; see
    `hivewire.natsauth.resolve_credentials`); none of them: no auth. A server that
    requires TLS is checked against `hivewire.tls.nats_ca` (HIVE_NATS_CA, else
    HIVE_HOME/tls/ca.pem): a server its CA did not sign is refused.
    """
    if isinstance(servers, str):
        servers = [s.strip() for s in servers.split(",") if s.strip()]
    creds = credentials if credentials is not None else (None if user_credentials else resolve_credentials())
    ca = tls.nats_ca()
    tls_ctx = tls.client_context(ca) if ca is not None else None

    last_error: list[Exception] = []
    untrusted = asyncio.Event()

    async def on_error(exc: Exception) -> None:
        last_error[:] = [exc]
        if isinstance(exc, ssl.SSLCertVerificationError):
            untrusted.set()
        NATS_EVENTS.labels("error").inc()
        log.warning("nats_error", error=str(exc))

    holder: list[Client] = []

    async def on_disconnect() -> None:
        if holder and (holder[0].is_closed or holder[0].is_draining):
            return  # our own shutdown, not an outage
        NATS_EVENTS.labels("disconnect").inc()
        log.warning("nats_disconnected")

    async def on_reconnect() -> None:
        NATS_EVENTS.labels("reconnect").inc()
        log.info("nats_reconnected")

    delay = 0.2
    while True:
        try:
            opts: dict[str, Any] = dict(
                servers=servers,
                name=name,
                allow_reconnect=True,
                # nats-py also applies this to the first connect: a CLI must fail fast.
                max_reconnect_attempts=-1 if forever else 1,
                reconnect_time_wait=0.5,
                connect_timeout=timeout,
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
            )
            if user_credentials:
                opts["user_credentials"] = user_credentials
            if creds is not None:
                opts.update(creds.connect_options())
            if tls_ctx is not None:  # used only when the server requires TLS
                opts["tls"] = tls_ctx
            nc = await _connect_bounded(opts, untrusted, timeout * 5 + 5)
            holder.append(nc)
            return nc
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            why = last_error[0] if isinstance(exc, TimeoutError) and last_error else exc
            if not forever:
                raise HiveError("unavailable", f"cannot reach NATS at {','.join(servers)}: {why}") from None
            log.warning("nats_connect_retry", servers=servers, error=str(why), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def flush(nc: Client, timeout: int = 10) -> None:
    """Return once the server has processed every command `nc` issued before the call, so a
    subscription made just before is in place when another connection publishes next.

    `nc.flush()` alone is no such barrier: nats-py writes its PING straight to the socket,
    ahead of the SUBs and PUBs still in its write buffer, and the PONG can come back before
    the server has read them. Handing that buffer to the socket first puts the PING after it.
    """
    if nc.is_connected:
        try:
            await asyncio.wait_for(nc._flush_pending(force_flush=True), timeout)
        except TimeoutError:
            raise nats.errors.FlushTimeoutError from None
    await nc.flush(timeout)


async def _connect_bounded(opts: dict[str, Any], untrusted: asyncio.Event, bound: float) -> Client:
    """`nats.connect`, given up on when the server's certificate does not verify or after `bound`
    seconds: after a failed TLS handshake nats-py waits forever for the dead socket to close."""
    untrusted.clear()
    task = asyncio.ensure_future(nats.connect(**opts))
    gave_up = asyncio.ensure_future(untrusted.wait())
    try:
        await asyncio.wait([task, gave_up], timeout=bound, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(gave_up)
    if task.done():
        return task.result()
    await cancel_and_wait(task)
    raise TimeoutError("NATS connect gave up (see the error before)")


class _NatsSub:
    def __init__(self, sub: Any) -> None:
        self._sub = sub

    async def unsubscribe(self) -> None:
        try:
            await self._sub.unsubscribe()
        except nats.errors.Error:
            pass


class _NatsService:
    def __init__(self, svc: Any, tasks: _TaskSet) -> None:
        self._svc, self._tasks = svc, tasks

    async def unsubscribe(self) -> None:
        try:
            await self._svc.stop()
        except nats.errors.Error:
            pass
        await self._tasks.drain(5.0)


def _msg(m: NatsMsg) -> Msg:
    return Msg(m.subject, m.data, dict(m.headers or {}), m.reply or "")


class NatsTransport:
    def __init__(self, nc: Client) -> None:
        self.nc = nc
        # publish_many's fast path queues its PUB commands the way nats-py's own
        # publish does (Client._send_publish, nats-py 2.x); without those internals it
        # publishes one by one (tests/lib/test_publish_many.py fails loudly on that)
        self.batched_publish = all(hasattr(nc, a) for a in ("_send_command", "_flush_pending", "_flush_queue"))

    @classmethod
    async def connect(cls, servers: list[str] | str, name: str, *, forever: bool = True) -> NatsTransport:
        return cls(await connect_nats(servers, name, forever=forever))

    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        await self.nc.publish(subject, data, headers=headers or None)

    async def publish_many(self, msgs: Sequence[tuple[str, bytes]]) -> None:
        """Why: a broker send publishes a reply, a wake and a change; through
        `Client.publish` each cost ~2 us of Python (validation, three awaits, its
        command built by f-string), a sixth of the broker's CPU per send in the flood
        benchmark. Here a batch's commands are checked, built and queued as one."""
        nc = self.nc
        if not (self.batched_publish and nc.is_connected):  # reconnecting, draining, closed: nats-py decides
            for subject, data in msgs:
                await nc.publish(subject, data)
            return
        limit, size, cmds = nc.max_payload, 0, []
        for subject, data in msgs:
            if not subject or BAD_SUBJECT.search(subject):
                raise nats.errors.BadSubjectError
            if len(data) > limit:
                raise nats.errors.MaxPayloadError
            cmds.append(b"PUB %b %d\r\n%b\r\n" % (subject.encode(), len(data), data))
            size += len(data)
        if not cmds:
            return
        nc.stats["out_msgs"] += len(cmds)
        nc.stats["out_bytes"] += size
        await nc._send_command(b"".join(cmds))
        if nc._flush_queue is not None and nc._flush_queue.empty():
            await nc._flush_pending()

    async def request(
        self, subject: str, data: bytes, timeout: float = 5.0, headers: dict[str, str] | None = None
    ) -> Msg:
        try:
            m = await self.nc.request(subject, data, timeout=timeout, headers=headers or None)
        except nats.errors.NoRespondersError:
            raise HiveError("unavailable", f"no service answers on {subject}") from None
        except nats.errors.TimeoutError:
            raise HiveError("timeout", f"no reply on {subject} within {timeout}s") from None
        return _msg(m)

    async def subscribe(self, subject: str, handler: Handler, queue: str = "") -> Subscription:
        async def cb(m: NatsMsg) -> None:
            try:
                await handler(_msg(m))
            except Exception:  # a subscriber bug must not kill the subscription
                log.exception("subscriber_failed", subject=m.subject)

        return _NatsSub(await self.nc.subscribe(subject, queue=queue, cb=cb))

    async def add_service(self, spec: ServiceSpec) -> Subscription:
        config = ServiceConfig(name=spec.name, version=spec.version, description=spec.description,
                               metadata=spec.metadata)
        svc = await add_service(self.nc, config) if spec.instance_id is None else await self._own_id_service(
            config, spec.instance_id)
        tasks = _TaskSet()
        for ep in spec.endpoints:
            if isinstance(ep, BatchEndpointSpec):
                handler = _micro_batch_handler(Batcher(ep.handler, tasks, self._reply, ep.first_turn))
            else:
                handler = _micro_handler(ep.handler, tasks)
            await svc.add_endpoint(name=ep.name, subject=ep.subject, queue_group=ep.queue_group, handler=handler)
        return _NatsService(svc, tasks)

    async def _own_id_service(self, config: ServiceConfig, instance_id: str) -> Service:
        """A micro service with a fixed id that answers PING/INFO/STATS only at
        `$SRV.<verb>.<name>.<id>` (nats.micro's `start` would also subscribe to the
        `$SRV.<verb>` and `$SRV.<verb>.<name>` broadcasts, which an agent's NATS user
        may not: whoever answers those can pose as any service)."""
        svc = Service(self.nc, config)
        svc._id = instance_id  # nats.micro has no option for it; INFO/PING/STATS report it
        handlers = {ServiceVerb.PING: svc._handle_ping_request, ServiceVerb.INFO: svc._handle_info_request,
                    ServiceVerb.STATS: svc._handle_stats_request}
        for verb, cb in handlers.items():
            subject = control_subject(verb, name=config.name, id=instance_id)
            svc._subscriptions[verb] = await self.nc.subscribe(subject, cb=cb)
        await flush(self.nc)
        return svc

    async def _reply(self, replies: list[tuple[str, Reply]]) -> None:
        """A turn's replies: the plain ones in one `publish_many`; those with headers
        (errors), or all of them one by one if that fails, each on its own."""
        plain = [(to, data) for to, (data, headers) in replies if not headers]
        try:
            await self.publish_many(plain)
            single = [(to, data, headers) for to, (data, headers) in replies if headers]
        except nats.errors.Error:
            single = [(to, data, headers) for to, (data, headers) in replies]
        for to, data, headers in single:
            try:
                await self.nc.publish(to, data, headers=headers or None)
            except nats.errors.Error as exc:  # one lost reply must not cost the others theirs
                log.warning("reply_failed", subject=to, error=str(exc))

    async def flush(self) -> None:
        await flush(self.nc)

    async def close(self) -> None:
        if self.nc.is_closed:
            return
        try:
            await asyncio.wait_for(self.nc.drain(), 5.0)
        except (TimeoutError, nats.errors.Error):
            await self.nc.close()


def _micro_handler(handler: RequestHandler, tasks: _TaskSet) -> Any:
    # nats-py runs a subscription's callbacks one at a time; hand each request
    # to its own task so one long-poll `recv` cannot stall every other caller.
    async def on_request(req: Any) -> None:
        msg = Msg(req.subject, req.data, dict(req.headers or {}), "")

        async def run() -> None:
            data, headers = await handler(msg)
            try:
                await req.respond(data, headers=headers or None)
            except nats.errors.Error as exc:
                log.warning("reply_failed", subject=msg.subject, error=str(exc))

        tasks.spawn(run())

    return on_request


def _micro_batch_handler(batcher: Batcher) -> Any:
    async def on_request(req: Any) -> None:
        # the reply subject: nats.micro's Request exposes no accessor for it
        batcher.add(Msg(req.subject, req.data, dict(req.headers or {}), req._msg.reply or ""))

    return on_request
