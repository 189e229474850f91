"""A wake is a doorbell: one whose message was already taken starts no turn."""

from __future__ import annotations

import asyncio
from typing import Any

from hivewire import codec, subjects
from hivewire.service import HiveClient, MicroService
from hivewire.wire import broker as wb
from hivewire.wire import ops
from tests.support.procs import wait_for


async def test_a_wake_without_a_message_starts_no_turn(
    real_broker: MicroService, harness_factory: Any, client: HiveClient, nats_transport: Any,
) -> None:
    svc = await harness_factory("alice")
    await client.request(ops.BROKER_SEND, wb.SendRequest(to="alice", body="hello"), agent="bob")

    async def one_turn() -> bool:
        return svc.loop.turns_done == 1

    await wait_for(one_turn, timeout=60)
    # the broker's wake for an answer that an earlier recv already delivered, arriving late
    for reason in ("answer", "reminder", "approval", "message"):
        await nats_transport.publish(subjects.wake("alice"), codec.encode(wb.Wake(reason=reason, ref="1")))
    await nats_transport.flush()
    await asyncio.sleep(2.0)  # several loop passes
    assert svc.loop.turns_done == 1
