"""A small base for Hive's NATS micro services, and the matching client.

A service lists `Endpoint`s (subject, request struct, async handler). The
base decodes the request, runs the handler, encodes the reply, and turns any
failure into a structured error reply, so a malformed request can never crash
a service or change its state. Metrics per endpoint come for free. A
`BatchEndpoint` gets the requests that arrived together in one handler call
(transport.Batcher), for a store that commits them as one job.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec
import structlog
from prometheus_client import Counter, Histogram

from hivewire import codec, subjects
from hivewire.errors import HiveError
from hivewire.metrics import observe_many
from hivewire.transport import BatchEndpointSpec, EndpointSpec, Msg, Reply, ServiceSpec, Subscription, Transport
from hivewire.wire.common import Empty
from hivewire.wire.op import Kind, Op
from hivewire.wire.ops import lookup

log = structlog.get_logger("hivewire.service")

Req = TypeVar("Req")
Rep = TypeVar("Rep")

REQUESTS = Counter("hive_requests_total", "Requests handled, by outcome.", ["service", "endpoint", "outcome"])
LATENCY = Histogram(
    "hive_request_duration_seconds",
    "Time to handle one request.",
    ["service", "endpoint"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 30, 180),
)


class Context(msgspec.Struct, frozen=True):
    """What a handler knows about the request besides its payload."""

    subject: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)

    def token(self, index: int) -> str:
        return subjects.token(self.subject, index)


def _check_contract(name: str, subject: str, request_type: type[Any]) -> None:
    """Refuse an endpoint the contract (hivewire.wire.ops) does not have: an unknown subject,
    or a known one with another request type."""
    op = lookup(subject, Kind.REQUEST)
    if op is None:
        raise ValueError(f"endpoint {name}: {subject!r} is not in the wire contract (hivewire.wire.ops)")
    if request_type is not op.request:
        raise TypeError(f"endpoint {name}: {subject!r} takes {op.request.__name__}, not {request_type.__name__}")


@dataclass(frozen=True)
class Endpoint(Generic[Req]):
    """A request/reply endpoint of the contract; build it with `Endpoint.of(op, handler)`."""

    name: str
    subject: str
    request_type: type[Req]
    handler: Callable[[Context, Req], Awaitable[Any]]
    queue_group: str = "q"

    def __post_init__(self) -> None:
        _check_contract(self.name, self.subject, self.request_type)

    @classmethod
    def of(cls, op: Op[Req, Rep], handler: Callable[[Context, Req], Awaitable[Rep]], **params: str) -> Endpoint[Req]:
        """`op` served by `handler`; `params` fill the op's parameters (the others are `*`:
        the harness serves `hive.agent.<its agent>.ctl.*`, the broker `hive.broker.*.send`)."""
        if op.kind is not Kind.REQUEST:
            raise ValueError(f"{op.id} is an event: it is published, not served")
        return cls(op.name, op.fill(**params), op.request, handler)


@dataclass(frozen=True)
class BatchEndpoint(Generic[Req]):
    """An endpoint handled a batch at a time (requests that arrived together).

    The handler gets `[(context, request), ...]` and returns, in the same order,
    each request's result or the `HiveError` (or other exception) that refuses
    it alone; raising fails the whole batch. For stores that commit a batch in
    one transaction (the broker's send). `first_turn` > 0: a bigger arrival is
    handled in two calls, its first `first_turn` requests answered before the
    rest are handled (why: `hivewire.transport.Batcher`).
    """

    name: str
    subject: str
    request_type: type[Req]
    handler: Callable[[list[tuple[Context, Req]]], Awaitable[Sequence[Any]]]
    queue_group: str = "q"
    first_turn: int = 0

    def __post_init__(self) -> None:
        _check_contract(self.name, self.subject, self.request_type)

    @classmethod
    def of(
        cls, op: Op[Req, Rep], handler: Callable[[list[tuple[Context, Req]]], Awaitable[Sequence[Rep | BaseException]]],
        *, first_turn: int = 0, **params: str,
    ) -> BatchEndpoint[Req]:
        if op.kind is not Kind.REQUEST:
            raise ValueError(f"{op.id} is an event: it is published, not served")
        return cls(op.name, op.fill(**params), op.request, handler, first_turn=first_turn)


class MicroService:
    """Base class: subclasses set `name` and return their `endpoints()`."""

    name: str = "hive-service"
    version: str = "0.1.0"
    description: str = ""

    def __init__(self, transport: Transport, *, metrics_url: str = "") -> None:
        self.transport = transport
        self.metrics_url = metrics_url
        self.started_at = time.time()
        self._handle: Subscription | None = None

    def endpoints(self) -> list[Endpoint[Any] | BatchEndpoint[Any]]:
        return []

    def metadata(self) -> dict[str, str]:
        meta = {"pid": str(os.getpid()), "host": socket.gethostname()}
        if self.metrics_url:
            meta["metrics_url"] = self.metrics_url
        return meta

    def instance_id(self) -> str | None:
        """A fixed micro id for a service run under an agent's NATS identity, which
        then answers discovery only at `$SRV.<verb>.<name>.<id>` (its NATS user may
        subscribe to nothing else under `$SRV`; see `subjects.srv`). Default: the
        `agent` in `metadata()` (the harness: `hive-harness.<agent>`), else None
        (a random id, answering the `$SRV.<verb>` broadcasts too)."""
        return self.metadata().get("agent") or None

    async def on_prepare(self) -> None:
        """Hook to open stores; runs before any endpoint can receive a request."""

    async def on_start(self) -> None:
        """Hook for background tasks; runs after endpoints are registered."""

    async def on_stop(self) -> None:
        """Hook to stop background tasks; runs before endpoints go away."""

    def on_error(self, endpoint: str, subject: str, code: str, err: HiveError | None) -> None:
        """Hook: a request was answered with error `code` (`err` is None for an
        internal failure, which the base has already logged with its traceback)."""

    async def start(self) -> None:
        await self.on_prepare()
        spec = ServiceSpec(
            name=self.name,
            version=self.version,
            description=self.description,
            metadata=self.metadata(),
            endpoints=[
                BatchEndpointSpec(ep.name, ep.subject, self._wrap_batch(ep), ep.queue_group, ep.first_turn)
                if isinstance(ep, BatchEndpoint)
                else EndpointSpec(ep.name, ep.subject, self._wrap(ep), ep.queue_group)
                for ep in self.endpoints()
            ],
            instance_id=self.instance_id(),
        )
        self._handle = await self.transport.add_service(spec)
        await self.on_start()
        log.info("service_started", service=self.name, version=self.version, endpoints=len(spec.endpoints))

    async def stop(self) -> None:
        await self.on_stop()
        if self._handle is not None:
            await self._handle.unsubscribe()
            self._handle = None
        log.info("service_stopped", service=self.name)

    async def emit(self, op: Op[Req, None], payload: Req, **params: str) -> None:
        """Publish the event `op` (every parameter given); the only way a service publishes."""
        await self.transport.publish(*encode_event(op, payload, **params))

    def _wrap(self, ep: Endpoint[Any]) -> Callable[[Msg], Awaitable[tuple[bytes, dict[str, str]]]]:
        # labelled children looked up once: `.labels()` per request was a measurable share of a send
        ok, latency = REQUESTS.labels(self.name, ep.name, "ok"), LATENCY.labels(self.name, ep.name)

        async def handle(msg: Msg) -> Reply:
            started = time.perf_counter()
            out: Reply
            try:
                req = codec.decode(msg.data, ep.request_type)
                result = await ep.handler(Context(msg.subject, msg.headers), req)
                out = codec.encode(result if result is not None else Empty()), {}
                ok.inc()
            except Exception as exc:
                out = self._refuse(ep.name, msg.subject, exc)
            latency.observe(time.perf_counter() - started)
            return out

        return handle

    def _refuse(self, endpoint: str, subject: str, exc: BaseException, *, logged: bool = False) -> Reply:
        """The error reply for a request that failed with `exc`, counted and logged
        (`logged`: the caller already logged this failure, once for a whole batch)."""
        if isinstance(exc, HiveError):
            REQUESTS.labels(self.name, endpoint, exc.code).inc()
            self.on_error(endpoint, subject, exc.code, exc)
            return codec.error_payload(exc)
        REQUESTS.labels(self.name, endpoint, "internal").inc()
        if not logged:
            log.error("handler_failed", service=self.name, endpoint=endpoint, subject=subject, exc_info=exc)
        self.on_error(endpoint, subject, "internal", None)
        return codec.error_payload(HiveError("internal", "internal error (logged by the service)"))

    def _wrap_batch(self, ep: BatchEndpoint[Any]) -> Callable[[list[Msg]], Awaitable[list[Reply]]]:
        ok, latency = REQUESTS.labels(self.name, ep.name, "ok"), LATENCY.labels(self.name, ep.name)

        async def handle(msgs: list[Msg]) -> list[Reply]:
            started = time.perf_counter()
            out: list[Reply | None] = [None] * len(msgs)
            good: list[int] = []
            items: list[tuple[Context, Any]] = []
            for i, msg in enumerate(msgs):
                try:
                    items.append((Context(msg.subject, msg.headers), codec.decode(msg.data, ep.request_type)))
                    good.append(i)
                except Exception as exc:
                    out[i] = self._refuse(ep.name, msg.subject, exc)
            results: Sequence[Any]
            failed = False
            try:
                results = await ep.handler(items) if items else []
                if len(results) != len(items):
                    raise RuntimeError(f"batch handler {ep.name} returned {len(results)} results for {len(items)}")
            except Exception as exc:  # the whole batch failed: one log line (a traceback per item took seconds)
                log.error("batch_failed", service=self.name, endpoint=ep.name, requests=len(items), exc_info=exc)
                results, failed = [exc] * len(items), True
            n_ok = 0
            for i, result in zip(good, results, strict=True):
                if isinstance(result, BaseException):
                    out[i] = self._refuse(ep.name, msgs[i].subject, result, logged=failed)
                else:
                    out[i] = codec.encode(result if result is not None else Empty()), {}
                    n_ok += 1
            ok.inc(n_ok)
            observe_many(latency, time.perf_counter() - started, len(msgs))
            return [o for o in out if o is not None]

        return handle


def check_payload(op: Op[Any, Any], payload: object) -> None:
    """Refuse a request or event payload that is not `op`'s type, before anything goes out
    (mypy checks typed callers; this catches the untyped ones, cheaply)."""
    if not isinstance(payload, op.request):
        raise TypeError(f"{op.id} takes {op.request.__name__}, not {type(payload).__name__}")


_EVENT = Kind.EVENT  # an Enum member looked up per call costs ~60 ns on Python 3.11


def encode_event(op: Op[Req, None], payload: Req, **params: str) -> tuple[str, bytes]:
    """The subject and bytes of the event `op` (every parameter given), checked against the op:
    for `emit`, and for a batch handed to `Transport.publish_many`. On the broker's send path
    (a wake and a change per send), hence the checks inline and the params passed on as they are."""
    if op.kind is not _EVENT:
        raise ValueError(f"{op.id} is a request: call it with request()")
    if not isinstance(payload, op.request):
        check_payload(op, payload)  # raises
    return op.subject_of(params), codec.encode(payload)


class HiveClient:
    """Requests and events of the contract, typed by their op: `await client.request(ops.CTL_STATE,
    Empty(), agent="alice")` returns the op's reply type, `emit(ops.X, payload, ...)` publishes an
    event. There is no call by subject: every subject, with its request and reply types, is an op's
    (`hivewire.wire.ops`), and a payload of another type raises `TypeError` before it goes out."""

    def __init__(self, transport: Transport, timeout: float = 5.0) -> None:
        self.transport = transport
        self.timeout = timeout

    async def request(self, op: Op[Req, Rep], req: Req, *, timeout: float | None = None, **params: str) -> Rep:
        """Call `op` (every parameter given: `agent=`, `host=`); raises `HiveError` on an error reply."""
        if op.kind is not Kind.REQUEST:
            raise ValueError(f"{op.id} is an event: publish it with emit()")
        check_payload(op, req)
        msg = await self.transport.request(op.subject_for(**params), codec.encode(req), timeout or self.timeout)
        return codec.parse_reply(msg.data, msg.headers, op.reply)

    async def emit(self, op: Op[Req, None], payload: Req, **params: str) -> None:
        """Publish the event `op` with every parameter given."""
        await self.transport.publish(*encode_event(op, payload, **params))
