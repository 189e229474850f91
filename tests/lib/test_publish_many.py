"""`Transport.publish_many`: several messages in one call, in order, all or none;
on NATS through the batched fast path, with nats-py's publish as the fallback.
(How batch endpoints' replies fall back: test_transport_contract.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
import pytest

from hivewire.errors import HiveError
from hivewire.nats_transport import NatsTransport
from hivewire.transport import Msg


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
