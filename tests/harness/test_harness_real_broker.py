"""End-to-end with the REAL hive-broker: real claude CLI, simulator, nats-server."""

from __future__ import annotations

from typing import Any

import pytest

from hive_broker import build as build_broker
from hive_harness.simmodel import SimModel, Step
from hivewire import subjects
from hivewire.nats_transport import NatsTransport
from hivewire.service import HiveClient
from hivewire.settings import Settings
from hivewire.wire import broker as wb
from tests.support.procs import running, wait_for

pytestmark = pytest.mark.e2e


async def test_real_broker_message_wakes_alice_who_sends_to_bob(
    sim: SimModel, harness_factory: Any, nats_transport: NatsTransport, settings: Settings, client: HiveClient
) -> None:
    async with running(build_broker, nats_transport, settings):
        for name in ("alice", "bob"):
            await client.call(subjects.broker_registry("upsert"), wb.RegistryRequest(name=name), wb.RegistryReply)
        sim.script.add(Step(kind="tool_use", tool_name="mcp__hive__send",
                            tool_input={"to": "bob", "body": "hi bob, via the real broker"}, match="greet bob now"))
        await harness_factory("alice")
        sent = await client.call(subjects.broker("operator", "send"), wb.SendRequest(to="alice", body="greet bob now"),
                                 wb.SendReply)

        async def bob_inbox() -> list[wb.Message]:
            r = await client.call(subjects.operator("messages", "list"), wb.MessagesListRequest(agent="bob"),
                                  wb.MessagesListReply)
            return [m for m in r.messages if m.sender == "alice" and m.to == "bob"]

        msgs = await wait_for(bob_inbox, timeout=90)
        assert msgs[0].body == "hi bob, via the real broker"

        async def alice_acked() -> bool:
            r = await client.call(subjects.operator("messages", "list"), wb.MessagesListRequest(agent="alice"),
                                  wb.MessagesListReply)
            return any(m.id == sent.id and m.acked_at is not None for m in r.messages)

        await wait_for(alice_acked, timeout=60)
