"""One contract, two transports: the in-memory fake and a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats.errors
import pytest

from hivewire import codec
from hivewire.errors import HiveError
from hivewire.nats_transport import NatsTransport
from hivewire.service import BatchEndpoint, Context, Endpoint, HiveClient, MicroService
from hivewire.transport import Batcher, Msg, _TaskSet, subject_matches
from hivewire.wire import ops
from hivewire.wire.broker import RecvReply, RecvRequest, SendReply, SendRequest
from hivewire.wire.common import Empty
from hivewire.wire.dashboard import DashboardInfo


class Echo(MicroService):
    name = "hive-echo"

    def __init__(self, transport: Any) -> None:
        super().__init__(transport)
        self.sent: list[SendRequest] = []
        self.slow_started = asyncio.Event()  # a slow request is in its handler
        self.release = asyncio.Event()  # ends it before its wait_s

    def endpoints(self) -> list[Endpoint[Any]]:
        return [
            Endpoint("send", "hive.broker.*.send", SendRequest, self.send),
            Endpoint("slow", "hive.broker.*.recv", RecvRequest, self.slow),
            Endpoint("boom", "hive.broker.*.counts", Empty, self.boom),
        ]

    async def send(self, ctx: Context, req: SendRequest) -> SendReply:
        if not req.body:
            raise HiveError("bad_request", "empty body")
        self.sent.append(req)
        return SendReply(id=ctx.token(2), sent_at=1.0)

    async def slow(self, ctx: Context, req: RecvRequest) -> RecvReply:
        self.slow_started.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.release.wait(), req.wait_s)
        return RecvReply(messages=[])

    async def boom(self, ctx: Context, req: Empty) -> Empty:
        raise RuntimeError("bug")


@pytest.mark.parametrize(
    ("pattern", "subject", "ok"),
    [
        ("a.*.c", "a.b.c", True),
        ("a.>", "a.b.c", True),
        ("a.>", "a", False),
        ("a.*", "a.b.c", False),
        ("a.b", "a.b", True),
    ],
)
def test_subject_matching(pattern: str, subject: str, ok: bool) -> None:
    assert subject_matches(pattern, subject) is ok


async def test_request_reply_and_errors(any_transport: Any) -> None:
    svc = Echo(any_transport)
    await svc.start()
    client = HiveClient(any_transport, timeout=2)
    try:
        reply = await client.request(ops.BROKER_SEND, SendRequest(to="bob", body="hi"), agent="alice")
        assert reply.id == "alice"
        with pytest.raises(HiveError) as err:
            await client.request(ops.BROKER_SEND, SendRequest(to="bob", body=""), agent="alice")
        assert err.value.code == "bad_request"
        with pytest.raises(HiveError) as err:
            await client.request(ops.BROKER_COUNTS, Empty(), agent="alice")
        assert err.value.code == "internal"
        assert len(svc.sent) == 1
    finally:
        await svc.stop()


@pytest.mark.parametrize("garbage", [b"\x00\xff garbage", b"{not json", b"[1,2]", b'{"to": 5}', b"\xc3\x28"])
async def test_garbage_gets_structured_error_and_service_keeps_answering(any_transport: Any, garbage: bytes) -> None:
    svc = Echo(any_transport)
    await svc.start()
    try:
        msg = await any_transport.request("hive.broker.alice.send", garbage, timeout=2)
        with pytest.raises(HiveError) as err:
            codec.parse_reply(msg.data, msg.headers, SendReply)
        assert err.value.code == "bad_request"
        assert msg.headers.get(codec.ERROR_CODE_HEADER) == "400"
        assert svc.sent == []  # nothing changed
        ok = await HiveClient(any_transport).request(ops.BROKER_SEND, SendRequest(to="b", body="x"), agent="alice")
        assert ok.id == "alice"
    finally:
        await svc.stop()


async def test_a_slow_request_does_not_block_others(any_transport: Any) -> None:
    svc = Echo(any_transport)
    await svc.start()
    client = HiveClient(any_transport, timeout=5)
    try:
        slow = asyncio.create_task(client.request(ops.BROKER_RECV, RecvRequest(wait_s=30), agent="a"))
        await asyncio.wait_for(svc.slow_started.wait(), 5)  # barrier: the slow one is in its handler
        fast = await client.request(ops.BROKER_SEND, SendRequest(to="x", body="y"), agent="b")
        assert fast.id == "b"
        assert not slow.done()  # the long poll is still waiting while we were answered
        svc.release.set()
        await asyncio.wait_for(slow, 5)
    finally:
        await svc.stop()


async def test_no_responders_is_unavailable(any_transport: Any) -> None:
    with pytest.raises(HiveError) as err:
        await HiveClient(any_transport, timeout=1).request(ops.BROKER_SEND, SendRequest(to="a", body="b"),
                                                           agent="nobody")
    assert err.value.code in ("unavailable", "timeout")


async def test_publish_subscribe_with_wildcards(any_transport: Any) -> None:
    got: list[str] = []
    done = asyncio.Event()

    async def on(msg: Msg) -> None:
        got.append(msg.subject)
        if len(got) == 2:
            done.set()

    sub = await any_transport.subscribe("hive.agent.*.wake", on)
    await any_transport.flush()
    await any_transport.publish("hive.agent.alice.wake", b"{}")
    await any_transport.publish("hive.agent.alice.events", b"{}")  # not matched
    await any_transport.publish("hive.agent.bob.wake", b"{}")
    await asyncio.wait_for(done.wait(), 3)
    assert sorted(got) == ["hive.agent.alice.wake", "hive.agent.bob.wake"]
    await sub.unsubscribe()


async def test_queue_group_delivers_each_message_once(any_transport: Any) -> None:
    counts = {"a": 0, "b": 0}

    def make(k: str) -> Any:
        async def on(msg: Msg) -> None:
            counts[k] += 1

        return on

    s1 = await any_transport.subscribe("q.x", make("a"), queue="g")
    s2 = await any_transport.subscribe("q.x", make("b"), queue="g")
    await any_transport.flush()
    for _ in range(20):
        await any_transport.publish("q.x", b"")
    await any_transport.flush()
    await asyncio.sleep(0.2)
    assert counts["a"] + counts["b"] == 20
    await s1.unsubscribe()
    await s2.unsubscribe()


class SlowToOpen(MicroService):
    name = "hive-slow-open"

    def __init__(self, transport: Any) -> None:
        super().__init__(transport)
        self.ready = False

    def endpoints(self) -> list[Endpoint[Any]]:
        return [Endpoint("get", "hive.dashboard.info", Empty, self.get)]

    async def on_prepare(self) -> None:
        await asyncio.sleep(0.5)  # e.g. opening and migrating a database
        self.ready = True

    async def get(self, ctx: Context, req: Empty) -> DashboardInfo:
        if not self.ready:
            raise RuntimeError("store used before it was opened")
        return DashboardInfo(url="", version="")


async def test_no_request_reaches_a_service_before_it_is_prepared(any_transport: Any) -> None:
    svc = SlowToOpen(any_transport)
    starting = asyncio.create_task(svc.start())
    client = HiveClient(any_transport, timeout=0.3)
    outcomes: set[str] = set()
    while not starting.done():
        try:
            await client.request(ops.DASHBOARD_INFO, Empty())
            outcomes.add("ok")
        except HiveError as err:
            outcomes.add(err.code)
        await asyncio.sleep(0.05)
    await starting
    await client.request(ops.DASHBOARD_INFO, Empty())
    await svc.stop()
    assert "internal" not in outcomes
    assert outcomes <= {"unavailable", "timeout", "ok"}


class Batched(MicroService):
    """A batch endpoint that records every batch it was handed."""

    name = "hive-batched"

    def __init__(self, transport: Any, *, fail: bool = False, first_turn: int = 0) -> None:
        super().__init__(transport)
        self.batches: list[list[str]] = []
        self.fail, self.first_turn = fail, first_turn

    def endpoints(self) -> list[Endpoint[Any] | BatchEndpoint[Any]]:
        return [BatchEndpoint("send", "hive.broker.*.send", SendRequest, self.send, first_turn=self.first_turn)]

    async def send(self, items: list[tuple[Context, SendRequest]]) -> list[Any]:
        self.batches.append([req.body for _, req in items])
        await asyncio.sleep(0.01)  # like a commit: later arrivals form the next batch
        if self.fail:
            raise RuntimeError("the whole batch failed")
        return [HiveError("bad_request", "refused") if req.body.startswith("bad")
                else SendReply(id=f"{ctx.token(2)}:{req.body}", sent_at=1.0) for ctx, req in items]


async def send_batched(client: HiveClient, n: int, bad_every: int) -> list[SendReply | HiveError]:
    """n concurrent sends to `Batched`, every `bad_every`th refused: each reply or error."""
    async def one(i: int) -> SendReply | HiveError:
        body = f"bad{i}" if i % bad_every == 0 else f"m{i}"
        try:
            return await client.request(ops.BROKER_SEND, SendRequest(to="x", body=body), agent=f"a{i}")
        except HiveError as err:
            return err

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def test_batch_endpoint_groups_concurrent_requests_and_answers_each(any_transport: Any) -> None:
    svc = Batched(any_transport)
    await svc.start()
    client = HiveClient(any_transport, timeout=5)
    try:
        results = await send_batched(client, 40, 5)
        for i, got in enumerate(results):
            if i % 5 == 0:
                assert isinstance(got, HiveError) and got.code == "bad_request"
            else:  # each caller got its own reply, not a neighbour's
                assert isinstance(got, SendReply) and got.id == f"a{i}:m{i}"
        assert sorted(b for batch in svc.batches for b in batch) == sorted(
            f"bad{i}" if i % 5 == 0 else f"m{i}" for i in range(40))
        assert max(len(b) for b in svc.batches) > 1, svc.batches  # concurrent requests shared a call
        # malformed payload in a batch: refused alone, the others still answered
        bad = asyncio.ensure_future(any_transport.request("hive.broker.z.send", b"{not json", 5))
        fine = await client.request(ops.BROKER_SEND, SendRequest(to="x", body="ok"), agent="y")
        assert fine.id == "y:ok"
        with pytest.raises(HiveError) as err:
            m = await bad
            codec.parse_reply(m.data, m.headers, SendReply)
        assert err.value.code == "bad_request"
    finally:
        await svc.stop()


async def test_batch_endpoint_first_turn_splits_a_big_arrival_in_two(any_transport: Any) -> None:
    svc = Batched(any_transport, first_turn=3)
    await svc.start()
    client = HiveClient(any_transport, timeout=5)
    try:
        got = await asyncio.gather(*(client.request(ops.BROKER_SEND, SendRequest(to="x", body=f"m{i}"), agent=f"a{i}")
                                     for i in range(20)))
        assert [r.id for r in got] == [f"a{i}:m{i}" for i in range(20)]
        assert sorted(b for batch in svc.batches for b in batch) == sorted(f"m{i}" for i in range(20))
        sizes = [len(b) for b in svc.batches]
        assert any(n > 3 for n in sizes), sizes  # the arrivals were big enough to split
        # every call over 3 is the second turn of an arrival whose first turn was exactly 3
        assert sum(n > 3 for n in sizes) <= sizes.count(3), sizes
    finally:
        await svc.stop()


async def test_batcher_answers_the_first_turn_before_the_rest() -> None:
    """One arrival bigger than first_turn: the first turn's replies are handed out,
    and a loop pass (the transport's writer sending them) happens, before the rest
    go to the handler in one call; an arrival no bigger is one call."""
    events: list[tuple[str, list[str]]] = []
    loop = asyncio.get_running_loop()

    async def handler(msgs: list[Msg]) -> list[Any]:
        events.append(("turn", [m.data.decode() for m in msgs]))
        return [(m.data, {}) for m in msgs]

    async def reply(replies: list[tuple[str, Any]]) -> None:
        bodies = [data.decode() for _, (data, _) in replies]
        events.append(("reply", bodies))
        loop.call_soon(events.append, ("written", bodies))  # like a transport's writer task

    tasks = _TaskSet()
    batcher = Batcher(handler, tasks, reply, first_turn=2)
    for i in range(5):
        batcher.add(Msg("s", f"m{i}".encode(), {}, f"inbox.{i}"))
    await tasks.drain(5)
    turns = [i for i, (kind, _) in enumerate(events) if kind == "turn"]
    assert [events[i][1] for i in turns] == [["m0", "m1"], ["m2", "m3", "m4"]]
    written = [b for kind, bodies in events[:turns[1]] if kind == "written" for b in bodies]
    assert written == ["m0", "m1"]  # the first turn was answered and written before the rest began
    events.clear()
    for i in range(2):
        batcher.add(Msg("s", f"n{i}".encode(), {}, f"inbox.n{i}"))
    await tasks.drain(5)
    assert [bodies for kind, bodies in events if kind == "turn"] == [["n0", "n1"]]


async def test_batcher_hands_requests_over_in_arrival_order() -> None:
    """What arrives while a split arrival's first turn is being handled joins its second
    turn: a handler call of its own would reach the handler (the broker: the writer's
    queue) before that second turn."""
    seen: list[str] = []
    first_turn_done = asyncio.Event()

    async def handler(msgs: list[Msg]) -> list[Any]:
        seen.extend(m.data.decode() for m in msgs)
        if msgs[0].data == b"m0":
            await first_turn_done.wait()  # a commit that takes a while
        return [(m.data, {}) for m in msgs]

    async def reply(replies: list[tuple[str, Any]]) -> None:
        return None

    tasks = _TaskSet()
    batcher = Batcher(handler, tasks, reply, first_turn=2)
    for i in range(5):
        batcher.add(Msg("s", f"m{i}".encode(), {}, f"inbox.{i}"))
    for _ in range(3):
        await asyncio.sleep(0)
    assert seen == ["m0", "m1"]
    for i in range(5, 8):  # later arrivals, one loop pass each
        batcher.add(Msg("s", f"m{i}".encode(), {}, f"inbox.{i}"))
        await asyncio.sleep(0)
    first_turn_done.set()
    await tasks.drain(5)
    assert seen == [f"m{i}" for i in range(8)]


async def test_batch_handler_failure_answers_every_request_with_internal(any_transport: Any) -> None:
    svc = Batched(any_transport, fail=True)
    await svc.start()
    client = HiveClient(any_transport, timeout=5)
    try:
        async def one(i: int) -> HiveError:
            with pytest.raises(HiveError) as err:
                await client.request(ops.BROKER_SEND, SendRequest(to="x", body=f"m{i}"), agent=f"a{i}")
            return err.value

        errors = await asyncio.gather(*(one(i) for i in range(5)))
        assert [e.code for e in errors] == ["internal"] * 5
    finally:
        await svc.stop()


@pytest.mark.parametrize("first_turn", [0, 3], ids=["whole", "two-turns"])
async def test_stopping_answers_every_request_a_batch_already_took(any_transport: Any, first_turn: int) -> None:
    svc = Batched(any_transport, first_turn=first_turn)
    await svc.start()
    client = HiveClient(any_transport, timeout=3)

    async def one(i: int) -> str:
        try:
            return (await client.request(ops.BROKER_SEND, SendRequest(to="x", body=f"m{i}"), agent=f"a{i}")).id
        except HiveError as err:
            return err.code

    calls = [asyncio.ensure_future(one(i)) for i in range(20)]
    for _ in range(200):  # until a batch is inside the handler (its 10 ms "commit")
        if svc.batches:
            break
        await asyncio.sleep(0.001)
    await svc.stop()
    got = await asyncio.gather(*calls)
    taken = [body for batch in svc.batches for body in batch]
    assert taken
    for i, outcome in enumerate(got):
        if f"m{i}" in taken:
            assert outcome == f"a{i}:m{i}"  # taken means answered, stop or not


async def test_replies_fall_back_one_by_one_when_the_batch_fails(
    nats_transport: NatsTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A turn's replies go out in one publish_many; if that raises, each reply is
    sent on its own, so every caller is still answered."""
    failed: list[int] = []

    async def broken(msgs: list[tuple[str, bytes]]) -> None:
        failed.append(len(msgs))
        raise nats.errors.OutboundBufferLimitError

    monkeypatch.setattr(nats_transport, "publish_many", broken)
    svc = Batched(nats_transport)
    await svc.start()
    try:
        results = await send_batched(HiveClient(nats_transport, timeout=5), 12, 4)
    finally:
        await svc.stop()
    assert [r.code if isinstance(r, HiveError) else r.id for r in results] == [
        "bad_request" if i % 4 == 0 else f"a{i}:m{i}" for i in range(12)]
    assert failed and sum(failed) == 9  # the nine plain replies were tried as batches first
