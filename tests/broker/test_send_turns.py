"""Sends that arrive together are stored in turns of `send_turn` (hivewire Batcher):
every send is still answered, stored once and woken for, whatever the turn size."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from typing import Any

from hive_broker.config import BrokerConfig
from hive_broker.service import BrokerService
from hivewire.nats_transport import NatsTransport
from hivewire.settings import Settings

from .conftest import FAST, Bus, eventually


def test_send_turn_comes_from_the_environment() -> None:
    assert BrokerConfig().send_turn == 16
    assert BrokerConfig.from_env({"HIVE_BROKER_SEND_TURN": "4"}).send_turn == 4
    assert BrokerConfig.from_env({"HIVE_BROKER_SEND_TURN": "zero"}).send_turn == 16  # nonsense: the default


async def test_a_burst_bigger_than_a_turn_is_answered_and_stored_once(
        nats_transport: NatsTransport, settings: Settings, nats_url: str) -> None:
    svc = BrokerService(nats_transport, settings, config=dataclasses.replace(FAST, send_turn=3))
    seen: list[int] = []
    real_send = svc.send

    async def counting_send(items: list[Any]) -> list[Any]:
        seen.append(len(items))
        return await real_send(items)

    svc.send = counting_send  # type: ignore[method-assign]
    await svc.start()
    client = await NatsTransport.connect(nats_url, name="turns-test", forever=False)
    bus = Bus(client)
    try:
        await bus.listen()
        await bus.register("alice", "bob")
        replies = await asyncio.gather(*(bus.send("alice", "bob", f"m{i}", id=f"c{i}") for i in range(40)))
        assert len({r.id for r in replies}) == 40
        assert max(seen) == 3, seen  # turns of at most 3, and sends did share them

        async def all_woken() -> bool:
            return {wk.ref for wk in bus.wakes_for("bob")} >= {r.id for r in replies}

        await eventually(all_woken)
    finally:
        await client.close()
        await svc.stop()
    conn = sqlite3.connect(settings.broker_db)
    bodies = sorted(b for (b,) in conn.execute("SELECT body FROM messages WHERE recipient = 'bob'"))
    conn.close()
    assert bodies == sorted(f"m{i}" for i in range(40))
