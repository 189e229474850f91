"""`Transport.publish_many`: several messages in one call, in order, all or none;
on NATS through the batched fast path, with nats-py's publish as the fallback."""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
import pytest

from hivewire.errors import HiveError
from hivewire.nats_transport import NatsTransport
from hivewire.service import BatchEndpoint, Context, HiveClient, MicroService
from hivewire.transport import Msg
from hivewire.wire.broker import SendReply, SendRequest


class Batched(MicroService):
    """A batch endpoint answering `bad*` bodies with an error, the rest with an id."""

    name = "hive-batched-pm"

    def endpoints(self) -> list[Any]:
        return [BatchEndpoint("send", "b.*.send", SendRequest, self.send)]

    async def send(self, items: list[tuple[Context, SendRequest]]) -> list[Any]:
        await asyncio.sleep(0.01)  # later arrivals form the next batch
        return [HiveError("bad_request", "refused") if req.body.startswith("bad")
                else SendReply(id=f"{ctx.token(1)}:{req.body}", sent_at=1.0) for ctx, req in items]


async def _collect(transport: Any, pattern: str) -> list[Msg]:
    got: list[Msg] = []

    async def on_msg(msg: Msg) -> None:
        got.append(msg)

    await transport.subscribe(pattern, on_msg)
    await transport.flush()
    return got


async def _settle(transport: Any, got: list[Msg], n: int) -> None:
    await transport.flush()
    for _ in range(200):
        if len(got) >= n:
            return
        await asyncio.sleep(0.01)


async def test_every_message_arrives_in_order_with_its_data(any_transport: Any) -> None:
    got = await _collect(any_transport, "pm.>")
    msgs = [(f"pm.{i % 3}.x", f"body {i} ".encode() * (i % 4)) for i in range(60)]
    await any_transport.publish_many(msgs)
    await any_transport.publish_many([])
    await _settle(any_transport, got, 60)
    assert [(m.subject, m.data) for m in got] == msgs


@pytest.mark.parametrize("bad", ["", "pm.with space", "pm.crlf\r\nPUB pm.injected 1"])
async def test_a_bad_subject_refuses_the_whole_batch(any_transport: Any, bad: str) -> None:
    got = await _collect(any_transport, "pm.>")
    with pytest.raises((HiveError, nats.errors.Error)):
        await any_transport.publish_many([("pm.ok", b"1"), (bad, b"2"), ("pm.ok", b"3")])
    await any_transport.publish("pm.after", b"x")  # the connection still works
    await _settle(any_transport, got, 1)
    await asyncio.sleep(0.05)
    assert [m.subject for m in got] == ["pm.after"]


async def test_nats_uses_the_batched_path_and_counts_what_it_sent(nats_transport: NatsTransport) -> None:
    # if a nats-py upgrade drops the internals, this fails instead of silently going slow
    assert nats_transport.batched_publish
    nc = nats_transport.nc
    calls: list[bytes] = []
    real = nc._send_command

    async def spy(cmd: bytes, priority: bool = False) -> None:
        calls.append(cmd)
        await real(cmd, priority)

    before = dict(nc.stats)
    nc._send_command = spy  # type: ignore[method-assign]
    try:
        await nats_transport.publish_many([("pm.a", b"12"), ("pm.b", b"345")])
    finally:
        del nc._send_command
    assert calls == [b"PUB pm.a 2\r\n12\r\nPUB pm.b 3\r\n345\r\n"]  # one command for the batch
    assert nc.stats["out_msgs"] == before["out_msgs"] + 2
    assert nc.stats["out_bytes"] == before["out_bytes"] + 5


async def test_nats_refuses_an_oversized_payload_and_sends_none(nats_transport: NatsTransport) -> None:
    got = await _collect(nats_transport, "pm.>")
    too_big = b"x" * (nats_transport.nc.max_payload + 1)
    with pytest.raises(nats.errors.MaxPayloadError):
        await nats_transport.publish_many([("pm.small", b"1"), ("pm.big", too_big)])
    await nats_transport.publish("pm.after", b"x")
    await _settle(nats_transport, got, 1)
    assert [m.subject for m in got] == ["pm.after"]


async def test_nats_on_a_closed_connection_raises_like_publish(nats_url: str) -> None:
    t = await NatsTransport.connect(nats_url, name="hive-test-closed", forever=False)
    await t.close()
    with pytest.raises(nats.errors.ConnectionClosedError):
        await t.publish_many([("pm.a", b"1")])


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
    client = HiveClient(nats_transport, timeout=5)
    try:
        async def one(i: int) -> Any:
            body = f"bad{i}" if i % 4 == 0 else f"m{i}"
            try:
                return (await client.call(f"b.a{i}.send", SendRequest(to="x", body=body), SendReply)).id
            except HiveError as err:
                return err.code

        results = await asyncio.gather(*(one(i) for i in range(12)))
    finally:
        await svc.stop()
    assert results == ["bad_request" if i % 4 == 0 else f"a{i}:m{i}" for i in range(12)]
    assert failed and sum(failed) == 9  # the nine plain replies were tried as batches first
